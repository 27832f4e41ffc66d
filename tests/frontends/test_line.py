"""The line protocol over in-memory transports: framing, replies and errors."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.core.limits import Limits
from chatroute.core.session import CLOSE_GRACE, Hub
from chatroute.frontends.line import ChatProtocol, ChatServerFactory, describe_peer
from chatroute.frontends.syntax import HELP


class Client:
    """One in-memory connection to the protocol under test."""

    def __init__(self, factory: ChatServerFactory, port: int, host: str = "127.0.0.1") -> None:
        address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
        self.protocol: ChatProtocol = factory.buildProtocol(address)
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def lines(self) -> list[str]:
        """Lines written since the last call, without their CR LF."""
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode().split("\r\n")[:-1]

    def say(self, line: str | bytes) -> list[str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.lines()


NO_LIMITS = Limits(0, 1, 0, 0, 0, 0, 0)


@pytest.fixture
def factory(chat) -> ChatServerFactory:
    return ChatServerFactory(Hub(chat.router, chat.accounts, chat.clock, NO_LIMITS, 64))


@pytest.fixture
def connect(factory):
    ports = iter(range(40000, 41000))

    def connect(nick: str | None = None) -> Client:
        client = Client(factory, next(ports))
        client.lines()
        if nick:
            assert client.say(f"#{nick}") == [f"* registered as {nick}"]
        return client

    return connect


@pytest.fixture
def lobby(connect):
    def lobby(*nicks: str) -> list[Client]:
        """Clients with C{nicks} in #lobby, the first its creator; what they were told is read."""
        people = [connect(nick) for nick in nicks]
        for person in people:
            person.say("/join #lobby")
        for person in people:
            person.lines()
        return people

    return lobby


def test_greeting(factory):
    client = Client(factory, 40122)
    assert client.lines() == ["* connected from 127.0.0.1:40122 — register with #yourname"]


def test_register_then_direct_message(connect):
    alice, bob = connect("alice"), connect("bob")
    assert alice.say("@bob:hello there") == []
    assert bob.lines() == ["<alice> hello there"]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_netcat_and_telnet_line_endings(connect, ending):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"@bob:one" + ending + b"@bob:two" + ending)
    assert bob.lines() == ["<alice> one", "<alice> two"]


def test_lines_split_across_chunks(connect):
    alice, bob = connect("alice"), connect("bob")
    for byte in b"@bob:piece by piece\r\n":
        alice.send(bytes([byte]))
    assert bob.lines() == ["<alice> piece by piece"]


def test_utf8_split_across_chunks(connect):
    alice, bob = connect("alice"), connect("bob")
    data = "@bob:héllo ✓\n".encode()
    alice.send(data[:7])
    alice.send(data[7:])
    assert bob.lines() == ["<alice> héllo ✓"]


def test_many_lines_in_one_chunk(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"".join(b"@bob:%d\n" % n for n in range(100)))
    assert bob.lines() == [f"<alice> {n}" for n in range(100)]


def test_room_commands(connect):
    alice, bob = connect("alice"), connect("bob")
    assert alice.say("/join #lobby") == ["* alice joined #lobby", "* #lobby (1): @alice"]
    assert bob.say("/join #lobby") == ["* bob joined #lobby", "* #lobby (2): @alice, bob"]
    assert alice.lines() == ["* bob joined #lobby"]
    assert bob.say("@#lobby:hi all") == ["#lobby <bob> hi all"]
    assert alice.lines() == ["#lobby <bob> hi all"]
    assert alice.say("/rooms") == ["* rooms (1): #lobby 2"]
    assert alice.say("/who") == ["* online (2): alice, bob"]
    assert alice.say("/who #lobby") == ["* #lobby (2): @alice, bob"]
    assert bob.say("/leave #lobby") == ["* bob left #lobby"]
    assert alice.lines() == ["* bob left #lobby"]


def test_topic_over_the_line(connect, lobby):
    alice, bob = lobby("alice", "bob")
    assert bob.say("/topic #lobby") == ["* #lobby has no topic"]
    assert bob.say("/topic #lobby mine") == ["! you are not an operator of #lobby"]
    assert alice.say("/topic #lobby release: friday") == [
        "* alice set the topic of #lobby: release: friday"
    ]
    assert bob.lines() == ["* alice set the topic of #lobby: release: friday"]
    assert connect().say("/topic #LOBBY") == ["* topic of #lobby: release: friday"]
    carol = connect("carol")
    assert carol.say("/join #lobby") == [
        "* carol joined #lobby",
        "* #lobby (3): @alice, bob, carol",
        "* topic of #lobby: release: friday",
    ]
    alice.lines()
    assert alice.say("/topic #lobby -") == ["* alice cleared the topic of #lobby"]
    assert alice.say("/topic #nowhere x") == ["! no such room: #nowhere"]


def test_away_and_whois_over_the_line(connect):
    alice, bob = connect("alice"), connect("bob")
    assert bob.say("/away gone fishing") == ["* you are marked as away: gone fishing"]
    assert alice.say("@bob:hi") == ["* bob is away: gone fishing"]
    assert alice.say("/whois BOB") == ["* bob: user bob, real name bob; away: gone fishing"]
    bob.lines()
    assert bob.say("/away") == ["* you are no longer marked as away"]
    assert alice.say("@bob:hi") == []
    assert alice.say("/whois carol") == ["! no such user: carol"]


def test_operators_kicks_and_bans_over_the_line(connect, lobby):
    alice, bob, carol = lobby("alice", "bob", "carol")
    assert bob.say("/kick #lobby carol") == ["! you are not an operator of #lobby"]
    assert alice.say("/op #lobby bob") == ["* alice made bob an operator of #lobby"]
    assert bob.lines() == carol.lines() == ["* alice made bob an operator of #lobby"]
    assert carol.say("/who #lobby") == ["* #lobby (3): @alice, @bob, carol"]
    assert alice.say("/op #lobby dave") == ["! no such user: dave"]
    connect("dave")
    assert alice.say("/op #lobby dave") == ["! dave is not in #lobby"]
    assert bob.say("/kick #lobby carol bye now") == [
        "* carol was kicked from #lobby by bob: bye now"
    ]
    assert carol.lines() == ["* carol was kicked from #lobby by bob: bye now"]
    assert carol.say("@#lobby:hi") == ["! you are not in #lobby"]
    assert bob.say("/ban #lobby Carol") == ["* bob banned Carol from #lobby"]
    assert carol.say("/join #lobby") == ["! you are banned from #lobby"]
    assert connect().say("/bans #lobby") == ["* bans of #lobby (1): Carol"]
    assert bob.say("/deop #lobby alice") == ["* bob took operator status in #lobby from alice"]
    alice.lines()
    assert alice.say("/unban #lobby carol") == ["! you are not an operator of #lobby"]
    assert bob.say("/unban #lobby carol") == ["* bob unbanned Carol from #lobby"]
    assert bob.say("/unban #lobby carol") == ["! carol is not banned from #lobby"]
    assert carol.say("/join #lobby")[0] == "* carol joined #lobby"


def test_room_modes_and_voice_over_the_line(connect, lobby):
    alice, bob = lobby("alice", "bob")
    assert alice.say("/mode #lobby") == ["* modes of #lobby: +t; created 2027-01-15T08:00:00Z"]
    assert alice.say("/mode #lobby +m") == [
        "* alice set #lobby +m (moderated: only operators and voiced members send)"
    ]
    assert bob.say("@#lobby:hi") == [
        "* alice set #lobby +m (moderated: only operators and voiced members send)",
        "! #lobby is moderated: only operators and voiced members send",
    ]
    assert alice.say("/voice #lobby bob") == ["* alice gave bob a voice in #lobby"]
    assert alice.say("/who #lobby") == ["* #lobby (2): @alice, +bob"]
    assert alice.say("/mode #lobby +m") == ["! #lobby already has +m"]
    assert alice.say("/devoice #lobby bob") == ["* alice took bob's voice in #lobby"]
    assert alice.say("/mode #lobby -t") == [
        "* alice set #lobby -t (every member may set the topic)"
    ]
    assert alice.say("/mode #lobby +s") == [
        "* alice set #lobby +s (secret: unlisted, members hidden from outsiders)"
    ]
    assert connect("carol").say("/rooms") == ["* rooms (0)"]
    assert alice.say("/mode #lobby")[0] == "* modes of #lobby: +ms; created 2027-01-15T08:00:00Z"
    assert alice.say("/mode #lobby +x") == [
        "! usage: /mode #room, or /mode #room +m, -m, +s, -s, +t or -t"
    ]
    bob.lines()
    assert bob.say("/mode #lobby -s") == ["! you are not an operator of #lobby"]


def test_a_ban_kicks_a_member(lobby):
    alice, bob = lobby("alice", "bob")
    told = ["* alice banned bob from #lobby", "* bob was kicked from #lobby by alice"]
    assert alice.say("/ban #lobby bob") == told
    assert bob.lines() == told
    assert alice.say("/who #lobby") == ["* #lobby (1): @alice"]


def test_actions_over_the_line(lobby):
    alice, bob = lobby("alice", "bob")
    assert alice.say("/me #lobby waves") == ["#lobby * alice waves"]
    assert bob.lines() == ["#lobby * alice waves"]
    assert bob.say("/me alice nods") == []
    assert alice.lines() == ["<bob> * nods"]
    assert bob.say("/history #lobby") == [
        "* history of #lobby: 1 message follows",
        "[2027-01-15T08:00:00Z] #lobby * alice waves",
    ]
    assert alice.say("/me #nowhere waves") == ["! no such room: #nowhere"]
    assert alice.say("/me") == ["! usage: /me #room action, or /me name action"]


def test_help(connect):
    assert connect().say("/help") == [f"* {line}" for line in HELP]


def test_quit_says_bye_closes_and_ignores_the_rest(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"/quit\n@bob:too late\n")
    assert alice.lines() == ["* bye"]
    assert not alice.transport.connected
    assert bob.lines() == []


def test_rename_tells_room(lobby):
    alice, bob = lobby("alice", "bob")
    assert alice.say("#alicia") == ["* registered as alicia"]
    assert bob.lines() == ["* alice is now alicia"]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"@bob:hi", "! register first with #yourname"),
        (b"/join #lobby", "! register first with #yourname"),
        (
            b"#1bad",
            "! invalid nickname: '1bad' (1-32 letters, digits, _ or -, starting with a letter)",
        ),
        (b"#alice", "! nickname taken: alice"),
        (b"hello", "! unrecognised line: start with #name, @name:, @#room: or / (try /help)"),
        (b"/dance", "! unknown command: /dance (try /help)"),
        (b"\xfe\xfe", "! invalid UTF-8; line discarded"),
        (b"#bo\x1bb", "! control characters are not allowed; line discarded"),
    ],
)
def test_errors_before_registering(connect, line, reply):
    connect("alice")
    guest = connect()
    assert guest.say(line) == [reply]
    assert guest.say("#bob") == ["* registered as bob"]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("@carol:hi", "! no such user: carol"),
        ("@bob", "! expected @name:message or @#room:message"),
        ("@bob:", "! empty message"),
        ("@#nowhere:hi", "! no such room: #nowhere"),
        (
            "@#:x",
            "! invalid room name: '#' (# then 1-32 letters, digits, _ or -, starting with a"
            " letter)",
        ),
        (
            "/me #a.b waves",
            "! invalid room name: '#a.b' (# then 1-32 letters, digits, _ or -, starting with a"
            " letter)",
        ),
        ("@#lobby:hi", "! you are not in #lobby"),
        (
            "/join lobby",
            "! invalid room name: 'lobby' (# then 1-32 letters, digits, _ or -, starting with a"
            " letter)",
        ),
        ("/join #mine", None),
        ("/leave #nowhere", "! no such room: #nowhere"),
        ("/leave #lobby", "! you are not in #lobby"),
        ("/who #nowhere", "! no such room: #nowhere"),
        ("/rooms please", "! usage: /rooms"),
    ],
)
def test_errors_after_registering(connect, line, reply):
    connect("alice").say("/join #lobby")
    bob = connect("bob")
    lines = bob.say(line)
    if reply is not None:
        assert lines == [reply]
    assert bob.say("@alice:still works") == []


def test_invalid_utf8_keeps_connection(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"@bob:\xc3\x28\n@bob:fine\n")
    assert alice.lines() == ["! invalid UTF-8; line discarded"]
    assert bob.lines() == ["<alice> fine"]


def test_blank_lines_are_ignored(connect):
    alice = connect("alice")
    alice.send(b"\n\r\n   \n")
    assert alice.lines() == []


def test_line_at_limit_accepted(connect):
    alice, bob = connect("alice"), connect("bob")
    line = b"@bob:" + b"x" * (64 - 5)
    alice.send(line + b"\r\n")
    assert bob.lines() == ["<alice> " + "x" * 59]


def test_overlong_line_in_one_chunk_is_refused_and_the_next_works(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"@bob:" + b"x" * 100 + b"\n@bob:after\n")
    assert alice.lines() == ["! line too long (over 64 bytes); discarded"]
    assert bob.lines() == ["<alice> after"]


def test_overlong_line_arriving_in_pieces_is_discarded_up_to_its_end(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"@bob:" + b"x" * 80)
    assert alice.lines() == ["! line too long (over 64 bytes); discarded"]
    for _ in range(10):
        alice.send(b"y" * 1000)
    alice.send(b"still the long line\n@bob:next")
    assert bob.lines() == []
    alice.send(b"\n")
    assert bob.lines() == ["<alice> next"]
    assert alice.lines() == []
    assert alice.transport.connected


def test_disconnect_mid_line_cleans_up(connect, lobby):
    alice, bob = lobby("alice", "bob")
    bob.send(b"@alice:never fini")
    bob.transport.loseConnection()
    assert alice.lines() == ["* bob left #lobby (disconnected)"]
    carol = connect()
    assert carol.say("#bob") == ["* registered as bob"]


def test_unexpected_error_is_reported_and_connection_kept(connect, factory, monkeypatch):
    alice, bob = connect("alice"), connect("bob")

    def broken(*args):
        raise RuntimeError("bug")

    monkeypatch.setattr(factory.hub.router, "rooms", broken)
    with capturedLogs() as logs:
        assert alice.say("/rooms") == ["! internal server error; the request was not completed"]
    assert [event["log_format"] for event in logs if event.get("log_failure")] == [
        "handling a line from {peer} failed"
    ]
    assert alice.say("@bob:ok") == []
    assert bob.lines() == ["<alice> ok"]


def test_room_line_encoded_once_for_all_members(connect, monkeypatch):
    import chatroute.frontends.syntax

    people = [connect(f"user{n}") for n in range(5)]
    for person in people:
        person.say("/join #lobby")
    for person in people:
        person.lines()
    calls = []
    real = chatroute.frontends.syntax.format_event

    def counting(event):
        calls.append(event)
        return real(event)

    monkeypatch.setattr(chatroute.frontends.syntax, "format_event", counting)
    people[0].say("@#lobby:hello")
    assert len(calls) == 1
    assert all(person.lines() == ["#lobby <user0> hello"] for person in people[1:])


def test_logs_never_contain_message_text(connect):
    with capturedLogs() as logs:
        alice = connect("alice")
        connect("bob")
        alice.say("@bob:secret words")
        alice.transport.loseConnection()
    assert logs
    assert not any("secret" in repr(event) for event in logs)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (IPv4Address("TCP", "10.0.0.1", 5), "10.0.0.1:5"),
        (IPv6Address("TCP", "::1", 5), "[::1]:5"),
    ],
)
def test_describe_peer(address, text):
    assert describe_peer(address) == text


def test_account_flow_over_the_wire(connect):
    alice = connect("alice")
    assert alice.say("/register secret123") == [
        "* alice is now a registered account; log in with #alice <password>"
    ]
    alice.say("/quit")
    bob = connect("bob")
    assert bob.say("@alice:are you there?") == [
        "* alice is offline; message stored for delivery at login"
    ]
    assert bob.say("#alice") == ["! alice is a registered account; log in with #alice <password>"]
    again = connect()
    assert again.say("#alice wrong-one") == ["! wrong nickname or password"]
    assert again.say("/login alice secret123") == [
        "* logged in as alice; 1 waiting message follows",
        "[2027-01-15T08:00:00Z] <bob> are you there?",
    ]
    assert again.say("/password secret123 newsecret1") == ["* password changed"]


def test_passphrases_over_the_wire(connect):
    alice = connect("alice")
    assert alice.say("/register correct horse battery staple") == [
        "* alice is now a registered account; log in with #alice <password>"
    ]
    assert alice.say('/password "correct horse battery staple" "battery \\"horse\\""') == [
        "* password changed"
    ]
    alice.say("/quit")
    assert connect().say('/login alice battery "horse"') == ["* logged in as alice"]


def test_a_wrong_old_password_is_not_a_failed_login(connect):
    alice = connect("alice")
    alice.say("/register secret123")
    assert alice.say("/password wrong-one newsecret1") == ["! wrong password"]


def test_later_lines_wait_for_a_pending_one(connect, chat, monkeypatch):
    """While a line waits for storage, the next ones queue; replies keep their order."""
    alice = connect("alice")
    connect("bob")
    pending = Deferred()
    monkeypatch.setattr(chat.storage, "get_account", lambda name: pending)
    alice.send(b"@nobody:hi\n/who\n@bob:after\n")
    assert alice.lines() == []
    assert alice.transport.producerState == "paused"
    pending.callback(None)
    assert alice.lines() == ["! no such user: nobody", "* online (2): alice, bob"]
    assert alice.transport.producerState == "producing"


def test_connection_closed_while_a_line_waits(connect, chat, monkeypatch):
    alice = connect("alice")
    pending = Deferred()
    monkeypatch.setattr(chat.storage, "get_account", lambda name: pending)
    alice.send(b"@nobody:hi\n/who\n")
    alice.transport.loseConnection()
    pending.callback(None)
    assert chat.router.who().nicks == ()


def test_second_login_closes_the_first_connection(connect):
    alice = connect("alice")
    alice.say("/register secret123")
    other = connect()
    assert other.say("#alice secret123") == ["* logged in as alice"]
    assert alice.lines() == ["* logged in from another connection; closing"]
    assert not alice.transport.connected


def test_telnet_commands_are_answered_and_never_reach_the_chat(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"@bob:before\r\n\xff\xf4\xff\xfd\x06@bob:after\r\n")
    assert alice.transport.value() == b"\xff\xfb\x06"
    assert bob.lines() == ["<alice> before", "<alice> after"]


TELNET_MANGLED = (
    "! invalid UTF-8: your telnet client changed non-ASCII characters; "
    "use nc or chatroute-client for non-ASCII text; line discarded"
)


def test_a_line_telnet_mangled_says_so(connect):
    """What Debian 12's telnet -8 sends for @bob:本 (E6 9C AC), chunk by chunk."""
    alice, bob = connect("alice"), connect("bob")
    # 0x9c becomes IAC BRK, IAC DO TIMING-MARK; the rest waits for the answer.
    alice.send(b"@bob:\xe6\xff\xf3\xff\xfd\x06")
    assert alice.transport.value() == b"\xff\xfb\x06"
    alice.transport.clear()
    alice.send(b"\xac\r\n")
    assert alice.lines() == [TELNET_MANGLED]
    assert alice.say("@bob:still works") == []
    assert bob.lines() == ["<alice> still works"]


@pytest.mark.parametrize(
    "data",
    [
        b"@bob:\xe6\xff\xf3\xff\xfd\x06\xac\r\n",  # the same in one chunk
        b"@bob:\xd0\xff\xf4\xff\xfd\x06\r\n",  # @bob:Ѓ (D0 83): 0x83 becomes IAC IP
    ],
)
def test_a_line_telnet_mangled_in_one_chunk(connect, data):
    """The timing mark is answered first: telnet shows nothing from the server until then."""
    alice, bob = connect("alice"), connect("bob")
    alice.send(data)
    assert alice.transport.value() == b"\xff\xfb\x06" + TELNET_MANGLED.encode() + b"\r\n"
    alice.transport.clear()
    assert alice.say("@bob:still works") == []
    assert bob.lines() == ["<alice> still works"]


def test_a_mangled_line_waits_its_turn(connect, chat, monkeypatch):
    alice = connect("alice")
    pending = Deferred()
    monkeypatch.setattr(chat.storage, "get_account", lambda name: pending)
    alice.send(b"@nobody:hi\r\n@bob:\xe6\xff\xf3\xff\xfd\x06\xac\r\n")
    assert alice.transport.value() == b"\xff\xfb\x06"
    alice.transport.clear()
    pending.callback(None)
    assert alice.lines() == ["! no such user: nobody", TELNET_MANGLED]


def test_a_line_begun_before_the_first_telnet_command_counts(connect):
    alice = connect("alice")
    alice.send(b"@bob:\xe6")
    alice.send(b"\xff\xf3\xff\xfd\x06\xac\r\n")
    assert alice.transport.value() == b"\xff\xfb\x06" + TELNET_MANGLED.encode() + b"\r\n"


def test_invalid_utf8_without_telnet_commands_is_plain(connect):
    alice = connect("alice")
    alice.send(b"\xff\xfd\x01")  # telnet negotiates, then a line of its own
    alice.transport.clear()
    assert alice.say(b"@bob:\xe6\xac") == ["! invalid UTF-8; line discarded"]


def test_a_stray_255_from_nc_takes_no_line_ending_with_it(connect):
    """As C{printf '@zed:a\\xff\\n'; printf '@zed:next ok\\n'} piped to nc."""
    zed = connect("zed")
    zed.send(b"@zed:a\xff\n")
    assert zed.lines() == ["! invalid UTF-8; line discarded"]
    assert zed.say("@zed:next ok") == ["<zed> next ok"]
    assert zed.transport.value() == b""
    zed.send(b"@zed:b\xff\n@zed:same chunk\n")
    assert zed.lines() == ["! invalid UTF-8; line discarded", "<zed> same chunk"]


def test_bytes_that_read_as_telnet_commands_are_not_blamed_on_telnet_from_nc(connect):
    """Without any option negotiated, the client is not telnet: the plain error."""
    alice = connect("alice")
    assert alice.say(b"@bob:\xe6\xff\xf3\xac") == ["! invalid UTF-8; line discarded"]
    alice.send(b"\xff\xfd\x01")  # now telnet negotiates
    alice.transport.clear()
    assert alice.say(b"@bob:\xe6\xff\xf3\xac") == [TELNET_MANGLED]


def test_a_line_telnet_commands_left_valid_is_carried_out(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.send(b"@bob:\xe6\x9c\xff\xf1\xac\r\n")  # IAC NOP inside 本
    assert bob.lines() == ["<alice> \u672c"]


@pytest.fixture
def limited(chat):
    """Connections to factories with the given limits (the others off), one factory each."""
    ports = iter(range(42000, 43000))
    factories = {}

    def connect(host="10.0.0.1", nick=None, tls_required=False, **limits):
        key = (tls_required, *sorted(limits.items()))
        if key not in factories:
            factories[key] = ChatServerFactory(
                Hub(
                    chat.router,
                    chat.accounts,
                    chat.clock,
                    dataclasses.replace(NO_LIMITS, **limits),
                    64,
                    require_tls_for_login=tls_required,
                )
            )
        client = Client(factories[key], next(ports), host)
        client.lines()
        if nick:
            client.say(f"#{nick}")
        return client

    return connect


def test_flood_limit_refuses_lines_over_it_and_says_so(limited, chat):
    alice = limited(nick="alice", flood_rate=2, flood_burst=3)
    bob = limited(nick="bob", flood_rate=2, flood_burst=3)
    chat.clock.advance(10)
    alice.send(b"".join(b"@bob:%d\n" % n for n in range(5)))
    assert bob.lines() == ["<alice> 0", "<alice> 1", "<alice> 2"]
    refusal = "! flood limit: at most 2 lines a second (bursts of 3); line discarded: "
    assert alice.lines() == [refusal + "@bob:3", refusal + "@bob:4"]
    chat.clock.advance(1)
    alice.send(b"@bob:later\n")
    assert bob.lines() == ["<alice> later"]


@pytest.mark.parametrize(
    ("line", "quoted"),
    [
        (b"@bob:" + b"x" * 100, "@bob:" + "x" * 34 + "…"),
        (b"#alice correct horse battery", "#alice ********"),
        (b"/register hunter22", "/register ********"),
        (b"@bob:\x1b[2J", "@bob:\N{REPLACEMENT CHARACTER}[2J"),
        (b"@bob:\xc3(", "@bob:\N{REPLACEMENT CHARACTER}("),
    ],
)
def test_a_flood_refusal_names_the_start_of_the_line(limited, chat, line, quoted):
    alice = limited(nick="alice", flood_rate=1, flood_burst=1)
    chat.clock.advance(10)
    alice.send(b"/ping\n" + line + b"\n")
    assert alice.lines() == [
        "* pong",
        f"! flood limit: at most 1 line a second (bursts of 1); line discarded: {quoted}",
    ]


def test_limits_tells_the_connection_its_limits(limited):
    alice = limited(flood_rate=2.5, flood_burst=7, idle_timeout=300)
    assert alice.say("/limits") == [
        "* limits: flood-rate=2.5 flood-burst=7 max-line-length=64 idle-timeout=300"
    ]


def test_limits_says_0_for_limits_that_are_off(connect):
    assert connect().say("/limits") == [
        "* limits: flood-rate=0 flood-burst=1 max-line-length=64 idle-timeout=0"
    ]


def test_too_many_connections_from_one_address(limited):
    first = limited(max_per_address=1)
    second = Client(first.protocol.factory, 42999, "10.0.0.1")
    assert second.lines() == ["! too many connections from 10.0.0.1 (at most 1); closing"]
    assert not second.transport.connected
    other = Client(first.protocol.factory, 42998, "10.0.0.2")
    assert other.lines()[0].startswith("* connected from 10.0.0.2")
    first.transport.loseConnection()
    third = Client(first.protocol.factory, 42997, "10.0.0.1")
    assert third.lines()[0].startswith("* connected from 10.0.0.1")


def test_connection_cap(limited):
    first = limited(max_connections=1)
    refused = Client(first.protocol.factory, 42996, "10.9.9.9")
    assert refused.lines() == ["! the server is full (1 connections); closing"]


def test_no_nickname_in_time(limited, chat):
    guest = limited(register_timeout=30)
    chat.clock.advance(29)
    guest.say("/who")
    chat.clock.advance(1)
    assert guest.lines() == ["* no nickname after 30 s; closing"]
    assert not guest.transport.connected


def test_idle_timeout_after_registering_and_ping_keeps_alive(limited, chat):
    alice = limited(nick="alice", register_timeout=30, idle_timeout=100)
    alice.lines()
    chat.clock.advance(90)
    assert alice.say("/ping") == ["* pong"]
    chat.clock.advance(90)
    assert alice.transport.connected
    chat.clock.advance(10)
    assert alice.lines() == ["* nothing received for 100 s; closing"]
    assert not alice.transport.connected


def test_a_client_that_does_not_read_is_dropped_and_the_sender_told(limited):
    alice = limited(nick="alice", max_send_buffer=1000)
    bob = limited(nick="bob", max_send_buffer=1000)
    for person in (alice, bob):
        person.say("/join #lobby")
    alice.lines()
    # Twisted pauses a transport's producer when its buffer passes the limit.
    bob.transport.producer.pauseProducing()
    assert not bob.transport.connected
    assert alice.lines() == ["* bob left #lobby (disconnected)"]
    assert alice.say("@bob:hello?") == ["! no such user: bob"]


def test_drop_during_a_delivery_tells_the_sender(limited):
    alice = limited(nick="alice", max_send_buffer=1000)
    bob = limited(nick="bob", max_send_buffer=1000)

    def full(data):
        bob.transport.producer.pauseProducing()

    bob.protocol.write = full
    assert alice.say("@bob:hi") == [
        "! bob is not reading messages and was disconnected; not delivered"
    ]


@pytest.mark.parametrize(
    ("host", "accepted"), [("203.0.113.5", False), ("127.0.0.1", True), ("::1", True)]
)
def test_passwords_over_plain_tcp_only_from_this_machine(limited, host, accepted):
    guest = limited(host=host, nick="alice", tls_required=True)
    replies = guest.say("/register secret123")
    if accepted:
        assert replies[0].startswith("* alice is now a registered account")
    else:
        assert replies == [
            "! passwords are accepted only over TLS; connect to the server's TLS port"
        ]
        assert guest.say("#alice secret123") == replies
        assert guest.say("/password a secret123") == replies


@implementer(ISSLTransport)
class TLSTransport(StringTransportWithDisconnection):
    """An in-memory transport that says it is TLS."""

    def setTcpNoDelay(self, enabled):
        pass


def test_under_tls_the_send_buffer_is_watched_once_the_handshake_is_done(chat):
    factory = ChatServerFactory(
        Hub(
            chat.router,
            chat.accounts,
            chat.clock,
            dataclasses.replace(NO_LIMITS, max_send_buffer=9),
        )
    )
    protocol = factory.buildProtocol(None)
    transport = TLSTransport()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    assert transport.producer is None
    protocol.handshakeCompleted()
    assert transport.producer is not None


def test_quit_behind_a_waiting_line_reads_again_and_frees_the_name(connect, chat, monkeypatch):
    alice = connect("alice")
    pending = Deferred()
    monkeypatch.setattr(chat.storage, "get_account", lambda name: pending)
    alice.send(b"@nobody:hi\n/quit\n")
    assert alice.transport.producerState == "paused"
    pending.callback(None)
    assert alice.lines() == ["! no such user: nobody", "* bye"]
    assert alice.transport.producerState == "producing", "a TLS close has to read"
    assert chat.router.who().nicks == ()


def test_a_close_the_client_does_not_complete_is_aborted(factory, chat):
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"#alice\n/quit\n")
    assert transport.disconnecting
    assert chat.router.who().nicks == (), "the name is free before the close completes"
    chat.clock.advance(CLOSE_GRACE)
    assert transport.disconnected


@implementer(ITCPTransport)
class TCPTransport(StringTransport):
    """A TCP connection in memory, which can shut its sending side alone."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False


def test_a_close_on_tcp_shuts_the_sending_side_and_reads_on_until_the_client_closes(factory, chat):
    protocol = factory.buildProtocol(None)
    transport = TCPTransport()
    protocol.makeConnection(transport)
    transport.clear()
    protocol.dataReceived(b"#alice\n/quit\n")
    assert transport.value() == b"* registered as alice\r\n* bye\r\n"
    # The client reads the last lines, then the end; it is not reset.
    assert transport.write_closed
    assert not transport.disconnecting
    assert transport.producerState == "producing", "what the client still sends is read"
    transport.clear()
    protocol.dataReceived(b"/who\n")
    assert transport.value() == b"", "and dropped"
    protocol.connectionLost(Failure(ConnectionDone()))
    chat.clock.advance(CLOSE_GRACE)
    assert not transport.disconnected, "closed by the client, nothing to abort"


def test_a_lingering_close_the_client_does_not_complete_is_aborted(factory, chat):
    protocol = factory.buildProtocol(None)
    transport = TCPTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"/quit\n")
    assert transport.write_closed
    chat.clock.advance(CLOSE_GRACE)
    assert transport.disconnected


def test_a_flood_refusal_comes_after_the_replies_to_the_lines_before_it(limited, chat, monkeypatch):
    pending = Deferred()
    monkeypatch.setattr(chat.storage, "get_account", lambda name: pending)
    guest = limited(flood_rate=1, flood_burst=2)
    chat.clock.advance(10)
    guest.send(b"#carol\n/ping\n@carol:too many\n")
    assert guest.lines() == [], "the registration waits for storage"
    pending.callback(None)
    assert guest.lines() == [
        "* registered as carol",
        "* pong",
        "! flood limit: at most 1 line a second (bursts of 2); line discarded: @carol:too many",
    ]


@pytest.fixture
def locked(chat):
    """Connections to a server whose password is C{open  sesame}."""
    hub = Hub(chat.router, chat.accounts, chat.clock, NO_LIMITS, 64, server_password="open  sesame")
    factory = ChatServerFactory(hub)
    ports = iter(range(43000, 44000))

    def connect(host: str = "127.0.0.1") -> Client:
        client = Client(factory, next(ports), host)
        client.lines()
        return client

    return connect


def test_the_greeting_of_a_server_with_a_password_says_to_give_it_first(chat):
    hub = Hub(chat.router, chat.accounts, chat.clock, NO_LIMITS, 64, server_password="sesame")
    client = Client(ChatServerFactory(hub), 40122)
    assert client.lines() == [
        "* connected from 127.0.0.1:40122 — this server has a password: /pass PASSWORD first, "
        "then register with #yourname"
    ]


def test_a_server_password_comes_before_anything_else(locked):
    alice = locked()
    required = ["! this server has a password: /pass PASSWORD first"]
    for line in ("#alice", "/who", "/rooms", "/login alice secret123", "/whois bob", "@bob:hi"):
        assert alice.say(line) == required
    assert alice.say("/ping") == ["* pong"]
    assert alice.say("/pass open sesame") == ["* server password accepted"]
    assert alice.say("#alice") == ["* registered as alice"]
    assert alice.say("/pass again") == ["* server password accepted"]


def test_a_wrong_server_password_closes_the_connection(locked):
    alice = locked()
    assert alice.say("/pass guess") == ["! wrong server password; closing"]
    assert not alice.transport.connected
    assert locked().say("/pass open sesame") == ["* server password accepted"]


def test_wrong_server_passwords_are_throttled_per_address(locked, chat):
    for _ in range(3):
        locked("192.0.2.1").say("/pass guess")
    assert locked("192.0.2.1").say("/pass open sesame") == [
        "! too many failed logins; try again in 1 s"
    ]
    assert locked("192.0.2.2").say("/pass open sesame") == ["* server password accepted"]
    chat.clock.advance(1)
    assert locked("192.0.2.1").say("/pass open sesame") == ["* server password accepted"]


def test_a_short_password_is_told_how_passphrases_are_written(connect):
    alice = connect("alice")
    assert alice.say("/register correct horse battery") == [
        "* alice is now a registered account; log in with #alice <password>"
    ]
    assert alice.say("/password correct horse") == [
        "! a password must be 8 to 1024 characters, spaces allowed (a run counts as one; white "
        'space at either end is dropped); in /password, quote one with spaces: /password "old '
        'words" "new words"'
    ]


def test_a_server_without_a_password_says_so(connect):
    assert connect().say("/pass anything") == ["* this server has no password"]
