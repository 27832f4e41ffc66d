"""
Property-based tests (hypothesis): the line parser, the telnet filter, the
framing of the byte stream, and the router's state under arbitrary sequences
of commands from several clients.

Everything runs in memory (L{tests.conftest.Chat}: memory storage, a test
clock, hashing on the calling thread), so every request is answered before
C{dataReceived} returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import get_args

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection

from chatroute.core.directory import ROOM_MODES
from chatroute.core.errors import (
    ChatError,
    ControlCharacters,
    EmptyMessage,
    InvalidEncoding,
    MalformedLine,
    TelnetMangled,
    UnknownCommand,
)
from chatroute.core.events import (
    AccountCreated,
    AwayChanged,
    BanChanged,
    BanList,
    Counts,
    DirectMessage,
    Event,
    HistoryStart,
    IsAway,
    Joined,
    Kicked,
    Left,
    LimitsInfo,
    LoggedIn,
    Notice,
    OperatorChanged,
    PasswordAccepted,
    PasswordChanged,
    Registered,
    Renamed,
    Replayed,
    RoomList,
    RoomMessage,
    RoomModeChanged,
    RoomModes,
    RoomTopic,
    StoredForLater,
    TopicChanged,
    UserInfo,
    UserList,
    VoiceChanged,
)
from chatroute.core.limits import Limits
from chatroute.core.session import Hub
from chatroute.frontends.line import ChatProtocol, ChatServerFactory
from chatroute.frontends.syntax import (
    ChangePassword,
    Command,
    CreateAccount,
    Help,
    History,
    Join,
    Kick,
    Leave,
    ListBans,
    ListRooms,
    Ping,
    Quit,
    Register,
    SendDirect,
    SendRoom,
    SetBan,
    SetOperator,
    SetTopic,
    ShowLimits,
    ShowTopic,
    Who,
    format_error,
    format_event,
    parse_line,
)
from chatroute.frontends.telnet import TelnetFilter
from tests.conftest import Chat

# Small enough that over-long lines are cheap to make, large enough for
# every ordinary line the strategies below build.
LIMIT = 100
INTERNAL_ERROR = "! internal server error; the request was not completed"

# The whole file runs in about ten seconds on a loaded machine; no deadline,
# which a loaded machine would break.
FAST = settings(max_examples=200, deadline=None)
FEWER = settings(max_examples=100, deadline=None)


def is_control(char: str) -> bool:
    """docs/protocol.md: U+0000-U+001F except tab, U+007F, and U+0080-U+009F."""
    code = ord(char)
    return (code < 0x20 and char != "\t") or 0x7F <= code <= 0x9F


def has_control(text: str) -> bool:
    return any(is_control(char) for char in text)


# ---------------------------------------------------------------------------
# Names, texts, passwords and lines, as docs/protocol.md defines them


NICK_PATTERN = r"[A-Za-z][A-Za-z0-9_-]{0,31}"
NICKS = st.from_regex(NICK_PATTERN, fullmatch=True)
ROOMS = NICKS.map(lambda nick: "#" + nick)
# Message text: no control characters, no white space at either end.
TEXTS = (
    st.text(st.characters(codec="utf-8").filter(lambda c: not is_control(c)), min_size=1)
    .map(str.strip)
    .filter(bool)
)
# A password as a command word: no white space (as str.split sees it), no controls.
WORDS = st.text(
    st.characters(codec="utf-8").filter(lambda c: not (c.isspace() or is_control(c))), min_size=1
)
# A password as /password's unquoted form: a word that does not start with ".
BARE = WORDS.filter(lambda word: not word.startswith('"'))
PAD = st.text(" \t", max_size=3)
SPACE = st.text(" \t", min_size=1, max_size=3)  # white space between words
GAP = PAD.map(lambda pad: " " + pad)  # between #name and password, as documented


def cased(word: str) -> st.SearchStrategy[str]:
    """C{word} in any mix of letter cases."""
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))
    )


def quoted(password: str) -> str:
    """C{password} in /password's quoted form (docs/protocol.md, Client to server)."""
    return '"' + password.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _slash(draw: st.DrawFn, word: str, *arguments: str) -> str:
    """C{/word} in any letter case, then the arguments, white space between."""
    return "".join(["/" + draw(cased(word)), *(draw(SPACE) + argument for argument in arguments)])


@st.composite
def _slash_commands(draw: st.DrawFn) -> tuple[str, Command]:
    """A C{/command} with arguments, and what it means."""
    nick, room, word, other = draw(NICKS), draw(ROOMS), draw(WORDS), draw(BARE)
    phrase, bare = draw(TEXTS), draw(BARE)
    count = draw(st.from_regex(r"[0-9]{1,7}", fullmatch=True))
    return draw(
        st.sampled_from(
            [
                (_slash(draw, "login", nick, word), Register(nick, word)),
                (_slash(draw, "register", word), CreateAccount(word)),
                (_slash(draw, "login", nick, phrase), Register(nick, phrase)),
                (_slash(draw, "register", phrase), CreateAccount(phrase)),
                (_slash(draw, "password", bare, other), ChangePassword(bare, other)),
                (_slash(draw, "password", quoted(phrase), other), ChangePassword(phrase, other)),
                (_slash(draw, "password", bare, quoted(word)), ChangePassword(bare, word)),
                (_slash(draw, "history", room), History(room, None)),
                (_slash(draw, "history", room, count), History(room, int(count))),
                (_slash(draw, "join", room), Join(room)),
                (_slash(draw, "leave", room), Leave(room)),
                (_slash(draw, "who", room), Who(room)),
                (_slash(draw, "me", room, phrase), SendRoom(room, phrase, True)),
                (_slash(draw, "me", nick, phrase), SendDirect(nick, phrase, True)),
                (_slash(draw, "topic", room), ShowTopic(room)),
                (
                    _slash(draw, "topic", room, phrase),
                    SetTopic(room, None if phrase == "-" else phrase),
                ),
                (_slash(draw, "op", room, nick), SetOperator(room, nick, True)),
                (_slash(draw, "deop", room, nick), SetOperator(room, nick, False)),
                (_slash(draw, "kick", room, nick), Kick(room, nick)),
                (_slash(draw, "kick", room, nick, phrase), Kick(room, nick, phrase)),
                (_slash(draw, "ban", room, nick), SetBan(room, nick, True)),
                (_slash(draw, "unban", room, nick), SetBan(room, nick, False)),
                (_slash(draw, "bans", room), ListBans(room)),
            ]
        )
    )


@st.composite
def _other_lines(draw: st.DrawFn) -> tuple[str, Command]:
    """Every other form: names, messages, and commands without arguments."""
    nick, room, text, word = draw(NICKS), draw(ROOMS), draw(TEXTS), draw(WORDS)

    def message(target: str) -> str:
        return f"@{draw(PAD)}{target}{draw(PAD)}:{draw(PAD)}{text}"

    return draw(
        st.sampled_from(
            [
                ("#" + nick, Register(nick)),
                (f"#{nick}{draw(GAP)}{word}", Register(nick, word)),
                (message(nick), SendDirect(nick, text)),
                (message(room), SendRoom(room, text)),
                (_slash(draw, "who"), Who(None)),
                (_slash(draw, "rooms"), ListRooms()),
                (_slash(draw, "help"), Help()),
                (_slash(draw, "ping"), Ping()),
                (_slash(draw, "limits"), ShowLimits()),
                (_slash(draw, "quit"), Quit()),
            ]
        )
    )


VALID_LINES = st.tuples(PAD, st.one_of(_slash_commands(), _other_lines()), PAD).map(
    lambda parts: (parts[0] + parts[1][0] + parts[2], parts[1][1])
)

# ---------------------------------------------------------------------------
# 1. The parser and the formatter

COMMAND_TYPES = get_args(Command)

ARBITRARY_TEXT = st.one_of(
    st.text(),
    st.binary().map(lambda data: data.decode("latin-1")),  # every C0 and C1 control
    st.binary().map(lambda data: data.decode("utf-8", "replace")),
    st.tuples(
        st.sampled_from(["#", "@", "@#", "/", "/join ", "/who ", "/history #a ", "/login "]),
        st.text(),
    ).map("".join),
)


# By the first character of the stripped line: what it may parse to, and the
# errors it may raise instead.
KINDS: dict[str, tuple[tuple[type, ...], tuple[type, ...]]] = {
    "": ((type(None),), ()),
    "#": ((Register,), ()),
    "@": ((SendDirect, SendRoom), (MalformedLine, EmptyMessage)),
    "/": (COMMAND_TYPES, (MalformedLine, UnknownCommand)),
}


@FAST
@given(ARBITRARY_TEXT)
def test_parse_line_gives_a_command_none_or_a_chat_error(text):
    """Whatever the text, the parser answers with a command, None, or a ChatError."""
    if has_control(text):
        with pytest.raises(ControlCharacters):
            parse_line(text.encode())
        return
    results, errors = KINDS.get(text.strip()[:1], ((), (MalformedLine,)))
    try:
        command = parse_line(text.encode())
    except ChatError as error:
        assert isinstance(error, errors), error
        return
    assert isinstance(command, results), command
    if isinstance(command, SendDirect | SendRoom):
        assert command.text and command.text == command.text.strip()


@example(("/join\t#lobby", Join("#lobby")))  # any white space separates the words
@FEWER
@given(VALID_LINES)
def test_valid_lines_parse_to_their_command(line_and_command):
    line, command = line_and_command
    assert parse_line(line.encode()) == command


EVENTS: dict[type, st.SearchStrategy[Event]] = {
    DirectMessage: st.builds(DirectMessage, NICKS, TEXTS, st.booleans()),
    RoomMessage: st.builds(RoomMessage, ROOMS, NICKS, TEXTS, st.booleans()),
    Joined: st.builds(Joined, ROOMS, NICKS),
    Left: st.builds(Left, ROOMS, NICKS, st.booleans(), st.none() | TEXTS),
    Renamed: st.builds(Renamed, NICKS, NICKS),
    Registered: st.builds(Registered, NICKS),
    UserList: st.builds(
        UserList,
        st.none() | ROOMS,
        st.lists(NICKS, max_size=5).map(tuple),
        st.lists(NICKS, max_size=2).map(tuple),
        st.just(()),
        st.lists(NICKS, max_size=2).map(tuple),
        st.booleans(),
    ),
    UserInfo: st.builds(UserInfo, NICKS, NICKS, TEXTS, st.none() | TEXTS),
    IsAway: st.builds(IsAway, NICKS, TEXTS),
    AwayChanged: st.builds(AwayChanged, st.none() | TEXTS),
    RoomTopic: st.builds(
        RoomTopic, ROOMS, st.none() | TEXTS, st.none() | NICKS, st.none() | st.floats(0, 2**32)
    ),
    Counts: st.builds(
        Counts,
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
    ),
    TopicChanged: st.builds(TopicChanged, ROOMS, NICKS, st.none() | TEXTS),
    OperatorChanged: st.builds(OperatorChanged, ROOMS, NICKS, NICKS, st.booleans()),
    Kicked: st.builds(Kicked, ROOMS, NICKS, NICKS, st.none() | TEXTS),
    BanChanged: st.builds(BanChanged, ROOMS, NICKS, NICKS, st.booleans()),
    BanList: st.builds(BanList, ROOMS, st.lists(NICKS, max_size=5).map(tuple)),
    RoomList: st.builds(
        RoomList, st.lists(st.tuples(ROOMS, st.integers(0, 10**6)), max_size=5).map(tuple)
    ),
    LoggedIn: st.builds(LoggedIn, NICKS, st.integers(0, 10**6)),
    AccountCreated: st.builds(AccountCreated, NICKS),
    PasswordChanged: st.builds(PasswordChanged),
    StoredForLater: st.builds(StoredForLater, NICKS),
    HistoryStart: st.builds(HistoryStart, ROOMS, st.integers(0, 10**6)),
    Replayed: st.builds(
        Replayed,
        st.floats(0, 2**32),
        st.builds(DirectMessage, NICKS, TEXTS, st.booleans())
        | st.builds(RoomMessage, ROOMS, NICKS, TEXTS, st.booleans()),
    ),
    LimitsInfo: st.builds(
        LimitsInfo,
        st.floats(0, 1000),
        st.integers(1, 1000),
        st.integers(1, 10**6),
        st.floats(0, 10**5),
    ),
    Notice: st.builds(Notice, TEXTS),
    PasswordAccepted: st.builds(PasswordAccepted, st.booleans()),
    VoiceChanged: st.builds(VoiceChanged, ROOMS, NICKS, NICKS, st.booleans()),
    RoomModeChanged: st.builds(
        RoomModeChanged, ROOMS, NICKS, st.sampled_from(ROOM_MODES), st.booleans()
    ),
    RoomModes: st.builds(
        RoomModes,
        ROOMS,
        st.lists(st.sampled_from(ROOM_MODES), unique=True).map(tuple),
        st.floats(0, 2**32),
    ),
}


def test_every_kind_of_event_has_a_strategy():
    assert set(EVENTS) == set(get_args(Event)), "add the new event to EVENTS"


@FAST
@given(st.one_of(*EVENTS.values()))
def test_formatted_events_are_one_line_saying_their_kind(event):
    line = format_event(event)
    assert not has_control(line), line
    kind = {DirectMessage: "<", RoomMessage: "#", Replayed: "["}.get(type(event), "*")
    assert line[:1] == kind


# ---------------------------------------------------------------------------
# 2. The telnet filter

IAC, SB, SE = b"\xff", b"\xfa", b"\xf0"


@st.composite
def split(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    """Some data, and the same data cut into non-empty chunks at arbitrary points."""
    whole = draw(data)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(whole) - 1)), max_size=8)))
    bounds = [0, *(cut for cut in cuts if cut < len(whole)), len(whole)]
    return whole, [whole[a:b] for a, b in pairwise(bounds) if a < b]


def filtered(chunks: list[bytes]) -> tuple[bytes, bytes]:
    """What a fresh filter keeps from C{chunks}, fed one by one, and what it answers."""
    telnet = TelnetFilter()
    kept, answers = b"", b""
    for chunk in chunks:
        more, answer = telnet.feed(chunk)
        kept += more
        answers += answer
    return kept, answers


@FAST
@given(
    split(
        st.binary(max_size=200)
        | st.lists(st.sampled_from([IAC, SB, SE, b"\xfd", b"\x06", b"a"])).map(b"".join)
    )
)
def test_telnet_filter_is_independent_of_chunking(data_and_chunks):
    data, chunks = data_and_chunks
    whole = filtered([data])
    assert filtered(chunks) == whole
    assert filtered([bytes([byte]) for byte in data]) == whole


@FAST
@given(split(st.binary().map(lambda data: data.replace(IAC, b""))))
def test_data_without_iac_passes_the_telnet_filter_unchanged(data_and_chunks):
    data, chunks = data_and_chunks
    assert filtered(chunks) == (data, b"")


WILL, WONT, DO, DONT, TIMING_MARK = b"\xfb", b"\xfc", b"\xfd", b"\xfe", b"\x06"


@st.composite
def telnet_commands(draw: st.DrawFn, literal: bool = True) -> tuple[bytes, bytes, bytes]:
    """
    A telnet command as a client sends it: its bytes, what the filter keeps
    of them, and what the server answers (docs/protocol.md, Framing).

    @param literal: include C{IAC IAC}, a literal byte 255 that the filter
        keeps, and IAC before a byte that is no command (below 240), both of
        which the filter keeps.
    """
    option = bytes([draw(st.integers(0, 255))])
    kinds = ["plain", "will", "wont", "do", "dont", "subnegotiation"]
    kind = draw(st.sampled_from([*kinds, "literal", "stray"] if literal else kinds))
    if kind == "stray":
        stray = IAC + bytes([draw(st.integers(0, 239))])
        return stray, stray, b""
    if kind == "plain":  # NOP, DM, BRK, IP, AO, AYT, EC, EL, GA
        return IAC + bytes([draw(st.integers(241, 249))]), b"", b""
    if kind == "will":
        return IAC + WILL + option, b"", IAC + DONT + option
    if kind == "do":
        return IAC + DO + option, b"", IAC + (WILL if option == TIMING_MARK else WONT) + option
    if kind in ("wont", "dont"):
        return IAC + (WONT if kind == "wont" else DONT) + option, b"", b""
    if kind == "literal":
        return IAC + IAC, IAC, b""
    pieces = st.binary(max_size=8).map(lambda data: data.replace(IAC, b"")) | st.just(IAC + IAC)
    return IAC + SB + b"".join(draw(st.lists(pieces, max_size=4))) + IAC + SE, b"", b""


@st.composite
def telnet_streams(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """Data interleaved with telnet commands: all of it, what is kept, what is answered."""
    data = st.binary(max_size=20).map(lambda data: data.replace(IAC, b""))
    parts = draw(st.lists(data.map(lambda data: (data, data, b"")) | telnet_commands()))
    sent, kept, answers = (b"".join(part[n] for part in parts) for n in range(3))
    return sent, kept, answers


@FAST
@given(telnet_streams(), st.data())
def test_telnet_filter_keeps_exactly_the_data(stream, data):
    sent, kept, answers = stream
    assert filtered(data.draw(split(st.just(sent)))[1]) == (kept, answers)


# ---------------------------------------------------------------------------
# 3. Framing: any bytes, cut anywhere, over one connection


class Client:
    """One in-memory connection to a server, driven as a TCP transport would drive it."""

    def __init__(self, factory: ChatServerFactory, number: int) -> None:
        address = IPv4Address("TCP", f"10.0.{number // 250}.{number % 250 + 1}", 40000 + number)
        self.protocol: ChatProtocol = factory.buildProtocol(address)
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    @property
    def connected(self) -> bool:
        return bool(self.transport.connected)

    def send(self, data: bytes) -> None:
        """Hand the server data, as a transport does: only while connected."""
        if self.transport.connected:
            self.protocol.dataReceived(data)

    def output(self) -> tuple[list[str], bytes]:
        """The lines written since the last call, and the telnet answers among them."""
        data = self.transport.value()
        self.transport.clear()
        return parse_output(data)


def make_factory(chat: Chat, limits: Limits | None = None) -> ChatServerFactory:
    """A server on C{chat}'s router, accounts and clock; chatroute's default limits if none."""
    return ChatServerFactory(
        Hub(chat.router, chat.accounts, chat.clock, max_line_length=LIMIT, limits=limits)
    )


# Without the flood limit, which bites any stream of more than 20 lines.
NO_FLOOD = Limits(flood_rate=0)


def parse_output(data: bytes) -> tuple[list[str], bytes]:
    """
    Server output as its lines, without their CR LF, and its telnet answers.

    Checks what every line must be: UTF-8 ending in CR LF, without control
    characters, and never the internal error (a bug).
    """
    lines: list[str] = []
    answers = b""
    at = 0
    while at < len(data):
        if data[at : at + 1] == IAC:  # never in UTF-8: a telnet answer, written whole
            answers += data[at : at + 3]
            at += 3
            continue
        end = data.find(b"\r\n", at)
        assert end >= 0, f"output not ending in CR LF: {data[at:]!r}"
        line = data[at:end].decode()
        assert not has_control(line), line
        assert line != INTERNAL_ERROR
        lines.append(line)
        at = end + 2
    return lines, answers


def serve(limits: Limits | None = None) -> tuple[Chat, Client]:
    """A fresh server, and one client whose greeting has been read."""
    chat = Chat()
    client = Client(make_factory(chat, limits), 1)
    lines, _ = client.output()
    assert len(lines) == 1 and lines[0].startswith("* connected from 10.0.0.2:40001 ")
    return chat, client


def run(chunks: list[bytes], limits: Limits = NO_FLOOD) -> tuple[list[str], bytes, bool]:
    """What a fresh server answers to C{chunks}: lines, telnet answers, still connected."""
    _, client = serve(limits)
    for chunk in chunks:
        client.send(chunk)
    lines, answers = client.output()
    return lines, answers, client.connected


LINE_ENDINGS = st.sampled_from([b"\n", b"\r\n"])
POOL_NICKS = st.sampled_from(["alice", "Alice", "bob", "carol", "dave-2", "Zed_9"])
BAD_NICKS = st.sampled_from(["", "1bad", "bad!", "x" * 33, "b\u00f6b", "two words"])
POOL_ROOMS = st.sampled_from(["#lobby", "#LOBBY", "#dev", "#x"])
BAD_ROOMS = st.sampled_from(["lobby", "#", "#1x", "#" + "r" * 33, "#two words"])
PASSWORDS = st.sampled_from(["secret123", "hunter2222", "short", "p\u00e4ssw\u00f6rd99"])
SHORT_TEXTS = st.sampled_from(["hi", "a: b", " spaced ", "\u00e9t\u00e9 \u2713"]) | st.text(
    st.characters(codec="utf-8", exclude_characters="\n"), max_size=20
)


def cased_command(line: str) -> st.SearchStrategy[str]:
    """The line with its command word, if it has one, in any letter case."""
    word, space, rest = line.partition(" ")
    if not word.startswith("/"):
        return st.just(line)
    return cased(word).map(lambda word: word + space + rest)


ANY_NICK = st.one_of(POOL_NICKS, POOL_NICKS, NICKS, BAD_NICKS)
ANY_ROOM = st.one_of(POOL_ROOMS, POOL_ROOMS, ROOMS, BAD_ROOMS)
COUNTS = st.sampled_from(["0", "1", "3", "20", "999", "x", "-1"])
ROOM_COMMANDS = st.sampled_from(["op", "deop", "kick", "ban", "unban"])


def _form(template: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(template.format, *parts)


# A line of every form, with names from a small pool so that they meet.
CHAT_TEXT_LINES = st.tuples(
    st.one_of(
        _form("#{}", ANY_NICK),
        _form("#{} {}", ANY_NICK, PASSWORDS),
        _form("/login {} {}", ANY_NICK, PASSWORDS),
        _form("/register {}", PASSWORDS),
        _form("/password {} {}", PASSWORDS, PASSWORDS),
        _form("@{}:{}", ANY_NICK, SHORT_TEXTS),
        _form("@{}:{}", ANY_ROOM, SHORT_TEXTS),
        _form("@{}", ANY_NICK),
        _form("@:{}", SHORT_TEXTS),
        _form("/join {}", ANY_ROOM),
        _form("/leave {}", ANY_ROOM),
        _form("/who {}", ANY_ROOM),
        _form("/history {}", ANY_ROOM),
        _form("/history {} {}", ANY_ROOM, COUNTS),
        _form("/me {} {}", ANY_ROOM | ANY_NICK, SHORT_TEXTS),
        _form("/topic {}", ANY_ROOM),
        _form("/topic {} {}", ANY_ROOM, SHORT_TEXTS | st.just("-")),
        _form("/{} {} {}", ROOM_COMMANDS, ANY_ROOM, ANY_NICK),
        _form("/kick {} {} {}", ANY_ROOM, ANY_NICK, SHORT_TEXTS),
        _form("/bans {}", ANY_ROOM),
        st.sampled_from(["/who", "/rooms", "/help", "/ping", "/quit", "/dance", "/rooms x"]),
        st.sampled_from(["", "  \t "]),
        st.text(max_size=30).filter(lambda text: "\n" not in text),
    ).flatmap(cased_command),
    PAD,
).map("".join)


# A line, without its ending, that a client might send: never LF or IAC.
CHAT_LINES = st.one_of(
    CHAT_TEXT_LINES.map(str.encode),
    CHAT_TEXT_LINES.map(str.encode),
    CHAT_TEXT_LINES.map(str.encode),
    st.binary(max_size=20).map(lambda data: data.replace(b"\n", b"").replace(IAC, b"")),
    # At the limit and over it, with a CR that does or does not count.
    st.tuples(
        st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2]) | st.integers(LIMIT, 3 * LIMIT),
        st.sampled_from([b"", b"\r"]),
    ).map(lambda size: (b"@bob:" + b"y" * size[0])[: size[0]] + size[1]),
)
STREAMS = st.lists(
    st.one_of(
        st.tuples(CHAT_LINES, LINE_ENDINGS).map(b"".join),
        st.tuples(CHAT_LINES, LINE_ENDINGS).map(b"".join),
        st.binary(max_size=20),
        telnet_commands().map(lambda command: command[0]),
    ),
    max_size=15,
).map(b"".join)

# Puts the protocol back to reading lines whatever state a stream left it
# in: completes a held telnet command, ends a subnegotiation, ends the line.
RESYNC = b"\x00\x00" + IAC + SE + b"\n"


def check_usable(chat: Chat, client: Client, lines: list[str]) -> None:
    """The connection closed only after /quit (its * bye the last line), or still answers."""
    if "* bye" in lines:
        assert lines.index("* bye") == len(lines) - 1
        assert not client.connected
        return
    assert client.connected
    chat.clock.advance(5)  # refills the flood limit's bucket
    client.send(RESYNC)
    lines, _ = client.output()
    if "* bye" in lines:  # the stream's last, unfinished, line was /quit
        assert lines[-1] == "* bye" and not client.connected
        return
    client.send(b"/who\n")
    (answer,), _ = client.output()
    assert answer.startswith("* online (")


@FAST
@given(split(st.binary(max_size=300)))
def test_any_bytes_get_well_formed_answers_and_keep_the_connection(data_and_chunks):
    _, chunks = data_and_chunks
    chat, client = serve()
    for chunk in chunks:
        client.send(chunk)
    lines, _ = client.output()
    check_usable(chat, client, lines)


@FEWER
@given(split(STREAMS))
def test_chat_streams_get_well_formed_answers_and_keep_the_connection(data_and_chunks):
    _, chunks = data_and_chunks
    chat, client = serve()
    for chunk in chunks:
        client.send(chunk)
    lines, _ = client.output()
    check_usable(chat, client, lines)


def check_telnet_answers(answers: bytes, expected: bytes, still_open: bool) -> None:
    """
    Every telnet command is answered while the connection is open; once it
    closes nothing more is read, so the answers are those up to some point.
    """
    assert answers == expected if still_open else expected.startswith(answers)


def check_same_answers(data: bytes, chunks: list[bytes], limits: Limits) -> None:
    """C{data} whole, in C{chunks}, and byte by byte gets the same lines back."""
    whole_lines, _, whole_open = run([data], limits)
    _, all_answers = filtered([data])
    for cut in ([data], chunks, [bytes([byte]) for byte in data]):
        lines, answers, still_open = run(cut, limits)
        assert (lines, still_open) == (whole_lines, whole_open)
        check_telnet_answers(answers, all_answers, still_open)


@FEWER
@given(split(STREAMS))
def test_answers_do_not_depend_on_how_the_stream_is_cut(data_and_chunks):
    """
    The same lines come out, in the same order, however the stream is cut,
    over-long lines included: their error comes as soon as the server has
    seen too much, which depends on the cut, but always after the answers to
    the lines before them and before those to the lines after them.

    Telnet answers go out with the answers to the chunk their command ends
    in, so they are compared on their own.
    """
    data, chunks = data_and_chunks
    check_same_answers(data, chunks, NO_FLOOD)


@example(
    data_and_chunks=(
        b"/ping\n" * 3 + b"y" * (LIMIT + 5) + b"\n/ping\n",
        [b"/ping\n" * 3 + b"y" * (LIMIT + 5), b"\n/ping\n"],
    )
)
@FEWER
@given(split(STREAMS))
def test_with_the_flood_limit_answers_do_not_depend_on_how_the_stream_is_cut(data_and_chunks):
    """
    An over-long line takes one token, whether the server refuses it when its
    end arrives or as soon as it has seen too much of it.
    """
    data, chunks = data_and_chunks
    check_same_answers(data, chunks, Limits(flood_rate=1, flood_burst=3))


INVALID_UTF8 = f"! {format_error(InvalidEncoding())}"
TELNET_MANGLED = f"! {format_error(TelnetMangled())}"


@FEWER
@given(STREAMS.map(lambda data: data.replace(IAC, b"")), st.data())
def test_telnet_commands_never_reach_the_chat(stream, data):
    """
    Telnet commands anywhere, even inside a line or a character, change no
    line; only a line that is not UTF-8 with a command inside it is said to
    be broken by telnet.
    """
    places = data.draw(st.lists(st.integers(0, len(stream)), max_size=6).map(sorted))
    commands = [data.draw(telnet_commands(literal=False)) for _ in places]
    pieces, start = [], 0
    for place, (command, _, _) in zip(places, commands, strict=True):
        pieces += [stream[start:place], command]
        start = place
    mixed = b"".join([*pieces, stream[start:]])
    expected = b"".join(answer for _, _, answer in commands)
    plain_lines, _, plain_open = run([stream])
    lines, answers, still_open = run(data.draw(split(st.just(mixed)))[1])
    lines = [INVALID_UTF8 if line == TELNET_MANGLED else line for line in lines]
    assert (lines, still_open) == (plain_lines, plain_open)
    check_telnet_answers(answers, expected, still_open)


@example(after=IAC + DO + TIMING_MARK)
@FEWER
@given(after=STREAMS)
def test_nothing_sent_after_quit_is_answered(after):
    """docs/protocol.md: 'anything sent after /quit is ignored', telnet commands too."""
    _, client = serve()
    client.send(b"/quit\r\n" + after)
    assert client.output() == (["* bye"], b"")
    assert not client.connected


@example(target="\u212aate")
@FAST
@given(target=st.text(st.sampled_from("kKateAT\u212a\u0130\u017f\u00e9"), min_size=1, max_size=6))
def test_a_name_breaking_the_rule_reaches_no_one(target):
    """
    A direct message to a name that breaks the naming rule is refused:
    nobody has it, even if Unicode case folding makes it a valid name
    (U+212A KELVIN SIGN folds to "k").
    """
    if re.fullmatch(NICK_PATTERN, target, re.ASCII):
        return
    holder = target.lower() if re.fullmatch(NICK_PATTERN, target.lower(), re.ASCII) else "kate"
    factory = make_factory(Chat())
    alice, other = Client(factory, 1), Client(factory, 2)
    alice.send(b"#alice\n")
    other.send(f"#{holder}\n".encode())
    alice.output(), other.output()
    alice.send(f"@{target}:hi\n".encode())
    assert alice.output() == ([f"! no such user: {target}"], b"")
    assert other.output() == ([], b"")


# ---------------------------------------------------------------------------
# 4. The router's state under any sequence of lines from several clients

# Timeouts on, flood limit off: the invariants below ask /who and /rooms
# after every step, which would soon use up a connection's tokens.
MACHINE_LIMITS = Limits(flood_rate=0)
REGISTER_TIMEOUT, IDLE_TIMEOUT = MACHINE_LIMITS.register_timeout, MACHINE_LIMITS.idle_timeout
NO_NICK_CLOSING = f"* no nickname after {REGISTER_TIMEOUT:g} s; closing"
IDLE_CLOSING = f"* nothing received for {IDLE_TIMEOUT:g} s; closing"
KICKED = "* logged in from another connection; closing"
CLOSINGS = {"* bye", KICKED, NO_NICK_CLOSING, IDLE_CLOSING}
REGISTERED = re.compile(r"\* registered as (\S+)")
LOGGED_IN = re.compile(r"\* logged in as ([^\s;]+)(?:; .*)?")
ACCOUNT_MADE = "* {name} is now a registered account; log in with #{name} <password>"
ACCOUNT_CREATED = re.compile(r"\* (\S+) is now a registered account; log in with #\S+ <password>")
JOINED = re.compile(r"\* (\S+) joined (#\S+)")
LEFT = re.compile(r"\* (\S+) left (#\S+)")
KICKED_OUT = re.compile(r"\* (\S+) was kicked from (#\S+) by \S+(?:: .*)?")


@dataclass(eq=False)
class Peer:
    """
    A client, and what the server has told it about itself: its nickname,
    whether it is logged in to an account, its rooms, whether it is closed.

    @ivar deadline: when the server closes the connection if nothing comes.
    @ivar named: it has had a nickname, so the idle timeout applies.
    """

    client: Client
    deadline: float
    nick: str | None = None
    account: bool = False
    rooms: dict[str, str] = field(default_factory=dict)  # name as shown, by lower case
    named: bool = False
    closed: bool = False

    def hear(self) -> tuple[list[str], bytes]:
        lines, answers = self.client.output()
        assert not (self.closed and (lines or answers)), f"written after closing: {lines}"
        for line in lines:
            self._learn(line)
        return lines, answers

    def gone(self) -> None:
        self.closed, self.nick, self.account, self.rooms = True, None, False, {}

    def _learn(self, line: str) -> None:
        assert not self.closed, f"{line!r} after the closing notice"
        if line in CLOSINGS:
            self.gone()
        elif match := REGISTERED.fullmatch(line):
            nick = match[1]
            # Only the letter case changes: a logged-in account stays logged in.
            same = self.nick is not None and self.nick.lower() == nick.lower()
            self.nick, self.account = nick, self.account and same
        elif match := LOGGED_IN.fullmatch(line):
            self.nick, self.account = match[1], True
        elif (match := ACCOUNT_CREATED.fullmatch(line)) and match[1] == self.nick:
            self.account = True
        elif (match := JOINED.fullmatch(line)) and match[1] == self.nick:
            self.rooms[match[2].lower()] = match[2]
        elif (match := LEFT.fullmatch(line) or KICKED_OUT.fullmatch(line)) and match[
            1
        ] == self.nick:
            del self.rooms[match[2].lower()]


def listing(title: str, items: list[str]) -> str:
    return f"* {title} ({len(items)}): {', '.join(items)}" if items else f"* {title} (0)"


# What docs/protocol.md says a line gets back:
REPLY = "reply"  # at least one line
SILENT = "silent"  # nothing: a blank line
QUIT = "quit"  # * bye, then the connection closes
# and (recipient, text) for a direct message to someone online: nothing back,
# unless the recipient is the sender.

WHICH = st.integers(0, 3)


class ChatMachine(RuleBasedStateMachine):
    """Clients on one server connect, talk, wait and leave; the state stays consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.chat = Chat()
        self.factory = make_factory(self.chat, MACHINE_LIMITS)
        self.peers: list[Peer] = []
        self.passwords: dict[str, str] = {}  # of the accounts made, by name

    def now(self) -> float:
        return self.chat.clock.seconds()

    def online(self) -> list[Peer]:
        return [peer for peer in self.peers if not peer.closed]

    def pick(self, which: int) -> Peer:
        """One of the clients online; a new one if none is."""
        if not self.online():
            self.connect_one()
        online = self.online()
        return online[which % len(online)]

    def send(self, peer: Peer, data: bytes) -> None:
        if peer.named:
            peer.deadline = self.now() + IDLE_TIMEOUT
        peer.client.send(data)

    def hear_all(self) -> dict[Peer, list[str]]:
        heard = {peer: peer.hear()[0] for peer in self.peers}
        for peer in self.online():
            if peer.nick is not None and not peer.named:
                peer.named, peer.deadline = True, self.now() + IDLE_TIMEOUT
        return heard

    def expect(self, sender: Peer, line: bytes, ending: bytes) -> object:
        """What the sender of C{line} gets back, by docs/protocol.md."""
        received = (line + ending)[:-1]  # up to the LF; then one CR is dropped
        if received.endswith(b"\r"):
            received = received[:-1]
        try:
            text = received.decode()
        except UnicodeDecodeError:
            return REPLY
        if len(received) > LIMIT or has_control(text):
            return REPLY
        text = text.strip()
        if not text:
            return SILENT
        if text.lower() == "/quit":
            return QUIT
        target, colon, message = text[1:].partition(":")
        target, message = target.strip(), message.strip()
        direct = text[0] == "@" and colon and message and target[:1] not in ("", "#")
        words = text.split(None, 2)
        if words[0].lower() == "/me" and len(words) == 3 and words[1][0] != "#":
            target, message, direct = words[1], "* " + words[2], True
        if direct and sender.nick is not None and target.isascii():
            for peer in self.online():
                # Names are ASCII, and the same ignoring letter case.
                if peer.nick is not None and peer.nick.lower() == target.lower():
                    return peer, message
        return REPLY

    def connect_one(self) -> None:
        peer = Peer(Client(self.factory, len(self.peers) + 1), self.now() + REGISTER_TIMEOUT)
        self.peers.append(peer)
        (greeting,), answers = peer.hear()
        assert greeting.startswith("* connected from 10.0.") and not answers

    @initialize()
    def two_clients(self) -> None:
        self.connect_one()
        self.connect_one()

    @precondition(lambda self: len(self.online()) < 4)
    @rule()
    def connect(self) -> None:
        self.connect_one()

    @rule(which=WHICH, line=CHAT_LINES, ending=LINE_ENDINGS)
    def send_line(self, which: int, line: bytes, ending: bytes) -> None:
        """Any line: the forms the protocol knows, broken ones, junk."""
        self.say(self.pick(which), line, ending)

    # The same with lines that get somewhere, so that users meet in rooms,
    # talk, make accounts and log in to them.

    @rule(which=WHICH, nick=POOL_NICKS)
    def take_nickname(self, which: int, nick: str) -> None:
        self.say(self.pick(which), f"#{nick}".encode())

    def named_peer(self, which: int, nick: str) -> Peer:
        """A client online, that has tried to take C{nick} if it had no nickname."""
        peer = self.pick(which)
        if peer.nick is None:
            self.say(peer, f"#{nick}".encode())
        return peer

    @rule(
        which=WHICH,
        nick=POOL_NICKS,
        command=st.sampled_from(["join", "join", "leave", "history", "who"]),
        room=POOL_ROOMS,
    )
    def use_a_room(self, which: int, nick: str, command: str, room: str) -> None:
        self.say(self.named_peer(which, nick), f"/{command} {room}".encode())

    @rule(
        which=WHICH,
        nick=POOL_NICKS,
        command=st.sampled_from(["op", "deop", "kick", "ban", "unban"]),
        room=POOL_ROOMS,
        other=POOL_NICKS,
    )
    def run_a_room(self, which: int, nick: str, command: str, room: str, other: str) -> None:
        self.say(self.named_peer(which, nick), f"/{command} {room} {other}".encode())

    @rule(which=WHICH, nick=POOL_NICKS, room=POOL_ROOMS, text=SHORT_TEXTS)
    def act_and_set_topics(self, which: int, nick: str, room: str, text: str) -> None:
        peer = self.named_peer(which, nick)
        self.say(peer, f"/topic {room} {text}".encode())
        self.say(peer, f"/me {room} {text}".encode())

    @rule(which=WHICH, command=st.sampled_from(["/who", "/rooms", "/help", "/ping", "/quit"]))
    def ask(self, which: int, command: str) -> None:
        self.say(self.pick(which), command.encode())

    @rule(which=WHICH, nick=POOL_NICKS, to=POOL_NICKS | POOL_ROOMS, text=SHORT_TEXTS)
    def talk(self, which: int, nick: str, to: str, text: str) -> None:
        self.say(self.named_peer(which, nick), f"@{to}:{text}".encode())

    @rule(which=WHICH, nick=POOL_NICKS, password=PASSWORDS)
    def make_account(self, which: int, nick: str, password: str) -> None:
        peer = self.named_peer(which, nick)
        name = peer.nick
        answer = self.say(peer, f"/register {password}".encode())
        if name is not None and answer == [ACCOUNT_MADE.format(name=name)]:
            self.passwords[name] = password

    @rule(which=WHICH, nick=POOL_NICKS, password=PASSWORDS, form=st.sampled_from(["#", "/login "]))
    def log_in(self, which: int, nick: str, password: str, form: str) -> None:
        self.say(self.pick(which), f"{form}{nick} {password}".encode())

    @precondition(lambda self: self.passwords)
    @rule(which=WHICH, account=st.integers(0, 10), form=st.sampled_from(["#", "/login "]))
    def log_in_with_the_password(self, which: int, account: int, form: str) -> None:
        name, password = sorted(self.passwords.items())[account % len(self.passwords)]
        self.say(self.pick(which), f"{form}{name.upper()} {password}".encode())

    def say(self, sender: Peer, line: bytes, ending: bytes = b"\r\n") -> list[str]:
        """Send one line, check the answers against docs/protocol.md, and return the sender's."""
        nick = sender.nick
        expected = self.expect(sender, line, ending)
        others = {peer: peer.nick for peer in self.online() if peer is not sender}
        self.send(sender, line + ending)
        heard = self.hear_all()
        mine = heard[sender]
        event("answer: " + (" ".join(mine[0].split()[:2]) if mine else "-"))
        assert sender.closed == (expected is QUIT)
        for peer, name in others.items():
            if peer.closed:  # only when someone logs in to its account
                assert heard[peer][-1] == KICKED
                logged_in = {line.split(";")[0].lower() for line in mine}
                assert f"* logged in as {name}".lower() in logged_in
        if expected is SILENT:
            assert mine == []
        elif expected is QUIT:
            assert mine == ["* bye"] and sender.closed
        elif expected is REPLY:
            assert mine, f"no answer to {line + ending!r}"
        else:
            recipient, text = expected
            if recipient is sender:
                assert mine == [f"<{nick}> {text}"]
            else:
                assert mine == [] and heard[recipient] == [f"<{nick}> {text}"]
        return mine

    @rule(
        which=WHICH,
        lines=st.lists(st.tuples(CHAT_LINES, LINE_ENDINGS), min_size=2, max_size=4),
    )
    def send_burst(self, which: int, lines: list[tuple[bytes, bytes]]) -> None:
        """Several lines in one chunk: answered in one write per client."""
        sender = self.pick(which)
        first = self.expect(sender, *lines[0])
        self.send(sender, b"".join(line + ending for line, ending in lines))
        heard = self.hear_all()
        if first is REPLY or first is QUIT:
            assert heard[sender]

    @rule(which=WHICH)
    def interrupt(self, which: int) -> None:
        """telnet's Ctrl-C: IAC IP, IAC DO TIMING-MARK; answered with IAC WILL TIMING-MARK."""
        peer = self.pick(which)
        self.send(peer, IAC + b"\xf4" + IAC + DO + TIMING_MARK)
        assert peer.hear() == ([], IAC + WILL + TIMING_MARK)
        assert not any(self.hear_all().values())

    @rule(which=WHICH, partial=st.just(b"") | CHAT_LINES)
    def disconnect(self, which: int, partial: bytes) -> None:
        """The client closes, maybe in the middle of a line, which is then discarded."""
        peer = self.pick(which)
        if partial:
            self.send(peer, partial)
            self.hear_all()  # an over-long one is refused at once
        nick, rooms = peer.nick, dict(peer.rooms)
        peer.client.transport.loseConnection()
        peer.gone()
        heard = self.hear_all()
        for other in self.online():
            assert sorted(heard[other]) == sorted(
                f"* {nick} left {name} (disconnected)"
                for key, name in rooms.items()
                if key in other.rooms
            )

    @rule(
        seconds=st.one_of(
            st.integers(1, 3),
            st.integers(1, 3),
            st.integers(1, 3),
            st.sampled_from([59, 60, 61, 899, 900, 901]),
        )
    )
    def time_passes(self, seconds: int) -> None:
        """Connections without a nickname in time, or silent too long, are closed."""
        later = self.now() + seconds
        online = self.online()
        due = [peer for peer in online if peer.deadline <= later]
        before = {peer: (peer.nick, dict(peer.rooms), peer.named) for peer in due}
        self.chat.clock.advance(seconds)
        heard = self.hear_all()
        assert [peer for peer in online if peer.closed] == due

        def told(peer: Peer) -> list[str]:
            return sorted(
                f"* {nick} left {name} (disconnected)"
                for nick, rooms, _ in before.values()
                for key, name in rooms.items()
                if key in peer.rooms
            )

        for peer in self.online():
            assert sorted(heard[peer]) == told(peer)
        for peer, (_, rooms, named) in before.items():
            *lefts, closing = heard[peer]
            assert closing == (IDLE_CLOSING if named else NO_NICK_CLOSING)
            # Told of those closed before it, in rooms it shared with them.
            possible = [
                f"* {nick} left {name} (disconnected)"
                for nick, others, _ in before.values()
                for key, name in others.items()
                if key in rooms
            ]
            assert all(line in possible for line in lefts)

    @invariant()
    def connections_are_open_until_closed(self) -> None:
        for peer in self.peers:
            assert peer.client.connected == (not peer.closed)

    @invariant()
    def user_map_matches_sessions(self) -> None:
        router = self.chat.router
        online = self.online()
        sessions = {session.participant: session for session in router._presences}
        assert len(sessions) == len(router._presences)
        assert set(sessions) == {peer.client.protocol._session for peer in online}
        named = {peer.nick.lower(): peer for peer in online if peer.nick is not None}
        assert set(router._directory._users) == set(named)
        for key, peer in named.items():
            session = router._directory._users[key]
            assert session is sessions[peer.client.protocol._session]
            assert (session.nick, session.account) == (peer.nick, peer.account)
        for session in router._presences:
            if session.nick is None:
                assert not session.rooms and not session.account

    @invariant()
    def rooms_match_members(self) -> None:
        router = self.chat.router
        members: dict[str, set[object]] = {}
        for peer in self.online():
            for key, name in peer.rooms.items():
                members.setdefault(key, set()).add(peer.client.protocol._session)
                assert router._directory._rooms[key].name == name
        assert {
            key: {session.participant for session in room.members.values()}
            for key, room in router._directory._rooms.items()
        } == members  # and so no room is empty
        for key, room in router._directory._rooms.items():
            assert key == room.name.lower()
            for member, session in room.members.items():
                assert session in router._presences and session.nick is not None
                assert member == session.nick.lower() and session.rooms[key] is room
        for session in router._presences:
            for key, room in session.rooms.items():
                assert router._directory._rooms[key] is room
        for room in router._directory._rooms.values():
            assert room.operators <= set(room.members)

    @invariant()
    def who_and_rooms_tell_the_truth(self) -> None:
        online = self.online()
        if not online:
            return
        asker = online[0]
        self.send(asker, b"/who\r\n/rooms\r\n")
        heard = self.hear_all()
        nicks = sorted((peer.nick for peer in online if peer.nick is not None), key=str.lower)
        rooms: dict[str, list[str]] = {}
        for peer in online:
            for key, name in peer.rooms.items():
                rooms.setdefault(key, []).append(name)
        counts = [f"{names[0]} {len(names)}" for _, names in sorted(rooms.items())]
        assert heard.pop(asker) == [listing("online", nicks), listing("rooms", counts)]
        assert not any(heard.values())


TestChatMachine = ChatMachine.TestCase
TestChatMachine.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
