"""
The real server over real loopback sockets, spoken to as C{nc} or C{telnet} would.
"""

import pytest

pytestmark = pytest.mark.integration

NETCAT = "\n"
TELNET = "\r\n"
LIMIT = 4096  # the server's default --max-line-length

TOO_LONG = f"! line too long (over {LIMIT} bytes); discarded"
CONTROL = "! control characters are not allowed; line discarded"


@pytest.mark.parametrize(
    ("alice_newline", "bob_newline"),
    [(NETCAT, NETCAT), (TELNET, TELNET), (NETCAT, TELNET)],
    ids=["netcat", "telnet", "netcat-to-telnet"],
)
def test_direct_messages_both_ways(connect, alice_newline, bob_newline):
    """Either line ending works; a direct message reaches only its recipient."""
    alice = connect("alice", alice_newline)
    bob = connect("bob", bob_newline)
    alice.register("alice")
    bob.register("bob")

    alice.send("@bob:hi bob")
    bob.expect("<alice> hi bob")
    bob.send("@alice:hi alice, grüße")
    alice.expect("<bob> hi alice, grüße")

    # Nothing was echoed to the senders.
    alice.sync(["alice", "bob"])
    bob.sync(["alice", "bob"])


def test_room_message_reaches_every_member_and_no_one_else(connect):
    names = ["ann", "ben", "cat", "dan", "eve"]
    members = []
    for name in names:
        member = connect(name)
        member.register(name)
        member.join("#lobby", *members)
        members.append(member)
    outsider = connect("olga")
    outsider.register("olga")

    for sender in members:
        sender.send(f"@#lobby:hello from {sender.nick}")
        for member in members:
            member.expect(f"#lobby <{sender.nick}> hello from {sender.nick}")

    outsider.sync([*names, "olga"])


def test_who_and_rooms(connect):
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    alice.register("alice")
    bob.register("bob")
    carol.send("/rooms")
    carol.expect("* rooms (0)")
    carol.sync(["alice", "bob"])  # carol is not registered yet, so not listed
    carol.register("carol")

    alice.join("#lobby")
    bob.join("#lobby", alice)
    carol.join("#Dev")

    carol.send("/who")
    carol.expect("* online (3): alice, bob, carol")
    carol.send("/rooms")
    carol.expect("* rooms (2): #Dev 1, #lobby 2")
    carol.send("/who #lobby")
    carol.expect("* #lobby (2): @alice, bob")

    bob.send("/leave #lobby")
    bob.expect("* bob left #lobby")
    alice.expect("* bob left #lobby")
    carol.send("/rooms")
    carol.expect("* rooms (2): #Dev 1, #lobby 1")
    alice.send("/leave #lobby")
    alice.expect("* alice left #lobby")
    carol.send("/rooms")
    carol.expect("* rooms (1): #Dev 1")


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        pytest.param(b"@bob:caf\xe9\n", "! invalid UTF-8; line discarded", id="invalid-utf8"),
        pytest.param(b"@bob:" + b"x" * 5000 + b"\n", TOO_LONG, id="line-of-5000-bytes"),
        pytest.param(b"@bob:" + b"y" * 300_000 + b"\r\n", TOO_LONG, id="line-of-300000-bytes"),
        pytest.param(
            b"/frobnicate now\n", "! unknown command: /frobnicate (try /help)", id="unknown-command"
        ),
        pytest.param(b"@bob:red \x1b[31malert\n", CONTROL, id="escape-sequence"),
        pytest.param(b"@bob:nul\x00byte\r\n", CONTROL, id="nul"),
        pytest.param("@bob:c1\x9bcontrol\n".encode(), CONTROL, id="c1-control"),
        pytest.param(
            b"hello there\n",
            "! unrecognised line: start with #name, @name:, @#room: or / (try /help)",
            id="no-prefix",
        ),
    ],
)
def test_bad_input_is_refused_and_the_connection_keeps_working(connect, data, reply):
    alice, bob = connect("alice"), connect("bob")
    alice.register("alice")
    bob.register("bob")

    alice.send_bytes(data)
    alice.expect(reply)

    alice.send("@bob:still here")
    bob.expect("<alice> still here")  # and not the refused line
    bob.send("@alice:so am I")
    alice.expect("<bob> so am I")
    # Exactly one error, and nothing else reached either of them.
    alice.sync(["alice", "bob"])
    bob.sync(["alice", "bob"])


def test_line_at_the_limit_is_accepted_and_one_byte_more_is_not(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.register("alice")
    bob.register("bob")
    text = "z" * (LIMIT - len("@bob:"))

    alice.send_bytes(f"@bob:{text}\r\n".encode())  # the CR does not count
    bob.expect(f"<alice> {text}")
    alice.send_bytes(f"@bob:{text}z\n".encode())
    alice.expect(TOO_LONG)
    alice.sync(["alice", "bob"])
    bob.sync(["alice", "bob"])


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_dropped_connection_leaves_its_rooms_and_frees_its_name(connect, reset):
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    alice.register("alice")
    bob.register("bob")
    carol.register("carol")
    alice.join("#lobby")
    alice.join("#dev")
    bob.join("#lobby", alice)
    carol.join("#dev", alice)

    alice.send_bytes(b"@#lobby:half a mess")  # never finished
    alice.close(reset=reset)

    bob.expect("* alice left #lobby (disconnected)")
    carol.expect("* alice left #dev (disconnected)")
    bob.sync(["bob", "carol"])
    bob.send("/rooms")
    bob.expect("* rooms (2): #dev 1, #lobby 1")

    again = connect("alice-again")
    again.register("alice")
    again.join("#lobby", bob, operator=None)  # alice, its operator, left
    bob.send("@alice:welcome back")
    again.expect("<bob> welcome back")


def test_quit_says_bye_and_closes(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.register("alice")
    bob.register("bob")
    alice.join("#lobby")
    bob.join("#lobby", alice)

    alice.send("/quit")
    alice.expect("* bye")
    alice.expect_eof()
    bob.expect("* alice left #lobby (disconnected)")
    bob.sync(["bob"])
