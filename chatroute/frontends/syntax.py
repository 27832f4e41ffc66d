"""
The line protocol's syntax: text lines in, commands out; events in, text lines out.

Pure functions over C{str}, and L{LineFormat}, which puts them on the wire
for the front ends that speak the line protocol (TCP, WebSocket).
C{docs/protocol.md} is the contract these implement.
"""

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from zope.interface import implementer

from chatroute.core.commands import (
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
    ServerPassword,
    SetAway,
    SetBan,
    SetOperator,
    SetRoomMode,
    SetTopic,
    SetVoice,
    ShowLimits,
    ShowRoomModes,
    ShowTopic,
    Who,
    Whois,
)
from chatroute.core.directory import MODERATED, SECRET, TOPIC_LOCK
from chatroute.core.errors import (
    NAME_RULE,
    AccountExists,
    AccountRequired,
    AlreadyBanned,
    AlreadyInRoom,
    AlreadyOperator,
    AlreadyVoiced,
    BackplaneUnavailable,
    BadPassword,
    BannedFromRoom,
    ChatError,
    ControlCharacters,
    EmptyMessage,
    Flooding,
    InternalError,
    InvalidEncoding,
    InvalidNickname,
    InvalidRoomName,
    LineTooLong,
    LoginFailed,
    LoginThrottled,
    MailboxFull,
    MalformedLine,
    Moderated,
    ModeUnchanged,
    NameRegistered,
    NicknameTaken,
    NoSuchAccount,
    NoSuchMember,
    NoSuchRoom,
    NoSuchUser,
    NotBanned,
    NotInRoom,
    NotLoggedIn,
    NotOperator,
    NotReading,
    NotRegistered,
    NotVoiced,
    OperatorRequired,
    PasswordNeedsTLS,
    ReasonTooLong,
    ServerFull,
    ServerPasswordRequired,
    TelnetMangled,
    TooManyConnections,
    TopicTooLong,
    UnknownCommand,
    WrongPassword,
    WrongServerPassword,
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
from chatroute.core.interfaces import IWireFormat
from chatroute.frontends.telnet import TelnetMangledLine

_HELP_TABLE = (
    ("/pass password", "give the server's password, on a server that has"),
    ("", "one (first of all)"),
    ("#name", "take the nickname name as a guest, or change to it"),
    ("#name password", "log in to the account name"),
    ("", "(also /login name password)"),
    ("/register password", "make your nickname an account with this password"),
    ("/password old new", "change your account's password"),
    ("", 'or /password "old words" "new words"'),
    ("", '(inside quotes \\" is " and \\\\ is \\)'),
    ("", "passwords: 8 to 1024 characters, spaces allowed"),
    ("", "(white space at either end is dropped; a run of"),
    ("", "it inside counts as one space)"),
    ("@name:message", "send a direct message"),
    ("@#room:message", "send a message to a room you are in"),
    ("/me #room action", "do an action in a room you are in"),
    ("", "(/me name action: to one user)"),
    ("/join #room", "join a room, creating it if needed"),
    ("", "(its creator is its operator)"),
    ("/leave #room [reason]", "leave a room, telling its members why"),
    ("/rooms", "list rooms and their member counts"),
    ("/who [#room]", "list online users, or a room's members"),
    ("", "(@ marks operators, + voiced members)"),
    ("/whois name", "show what is known of an online user"),
    ("/away [message]", "mark yourself away (senders of direct messages"),
    ("", "are told); /away: back"),
    ("/topic #room [text]", "show a room's topic, or set it (operators;"),
    ("", "/topic #room - clears it)"),
    ("/op #room name", "make a member an operator (operators only;"),
    ("", "/deop #room name undoes it)"),
    ("/voice #room name", "let a member send in a moderated room"),
    ("", "(operators; /devoice undoes it)"),
    ("/mode #room [+|-]m|s|t", "show a room's modes, or set one (operators):"),
    ("", "m moderated"),
    ("", "s secret (unlisted, members hidden from outsiders)"),
    ("", "t only operators set the topic"),
    ("/kick #room name [reason]", "put a member out of a room (operators only)"),
    ("/ban #room name", "ban a nickname from a room, kicking it"),
    ("", "(operators; /unban undoes it)"),
    ("/bans #room", "list the nicknames banned from a room"),
    ("/history #room [N]", "show the last N messages of a room you are in"),
    ("/ping", "get * pong back (keeps a quiet connection open)"),
    ("/limits", "show the flood, line-length and idle limits of"),
    ("", "this connection"),
    ("/help", "show this help"),
    ("/quit [reason]", "say goodbye and close the connection"),
    ("", "(rooms are told the reason)"),
)
"""The commands and what each does, a row a line; a row without a command goes on above."""
_HELP_COLUMN = 2 + max(len(command) for command, _ in _HELP_TABLE)

HELP = tuple(f"{command:<{_HELP_COLUMN}}{text}" for command, text in _HELP_TABLE)
"""
The answer to C{/help}: the commands in one column, what they do in the next,
every line short enough for an 80-column terminal with its C{* } in front.
"""

ROOM_MODE_LETTERS = {"m": MODERATED, "s": SECRET, "t": TOPIC_LOCK}
"""The letter of each room mode, on the line protocol as on IRC (C{/mode #lobby +s})."""
_MODE_LETTER = {mode: letter for letter, mode in ROOM_MODE_LETTERS.items()}
_MODE_MEANING = {
    (MODERATED, True): "moderated: only operators and voiced members send",
    (MODERATED, False): "not moderated",
    (SECRET, True): "secret: unlisted, members hidden from outsiders",
    (SECRET, False): "not secret",
    (TOPIC_LOCK, True): "only operators set the topic",
    (TOPIC_LOCK, False): "every member may set the topic",
}
MODE_USAGE = "usage: /mode #room, or /mode #room +m, -m, +s, -s, +t or -t"

# C0 controls but tab, DEL, and C1 controls: they would let one user corrupt
# another's terminal.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _room_argument(command: str, argument: str) -> str:
    if len(argument.split()) != 1:
        raise MalformedLine(f"usage: /{command} #room")
    return argument


def _no_argument(command: str, argument: str) -> None:
    if argument:
        raise MalformedLine(f"usage: /{command}")


def _login(argument: str) -> Register:
    words = argument.split(None, 1)
    if len(words) != 2:
        raise MalformedLine("usage: /login name password")
    return Register(words[0], words[1])


def _create_account(argument: str) -> CreateAccount:
    if not argument:
        raise MalformedLine("usage: /register password")
    return CreateAccount(argument)


# /password's two passwords: each a word that does not start with ", or a
# double-quoted string in which \" and \\ stand for " and \ (any other
# backslash is itself), which may hold spaces.
_PASSWORD = r'(?:"((?:[^"\\]|\\.)*)"|([^\s"]\S*))'
_PASSWORDS = re.compile(rf"{_PASSWORD}\s+{_PASSWORD}")
_ESCAPE = re.compile(r'\\([\\"])')
PASSWORD_USAGE = 'usage: /password old new, or with spaces: /password "old words" "new words"'


def _change_password(argument: str) -> ChangePassword:
    match = _PASSWORDS.fullmatch(argument)
    if match is None:
        raise MalformedLine(PASSWORD_USAGE)
    quoted_old, old, quoted_new, new = match.groups()
    return ChangePassword(
        old if quoted_old is None else _ESCAPE.sub(r"\1", quoted_old),
        new if quoted_new is None else _ESCAPE.sub(r"\1", quoted_new),
    )


TOPIC_USAGE = "usage: /topic #room [text], or /topic #room - to clear it"
ACTION_USAGE = "usage: /me #room action, or /me name action"


def _room_and_name(command: str, argument: str) -> tuple[str, str]:
    words = argument.split()
    if len(words) != 2:
        raise MalformedLine(f"usage: /{command} #room name")
    return words[0], words[1]


def _topic(argument: str) -> ShowTopic | SetTopic:
    words = argument.split(None, 1)
    if not words:
        raise MalformedLine(TOPIC_USAGE)
    if len(words) == 1:
        return ShowTopic(words[0])
    return SetTopic(words[0], None if words[1] == "-" else words[1])


def _kick(argument: str) -> Kick:
    words = argument.split(None, 2)
    if len(words) < 2:
        raise MalformedLine("usage: /kick #room name [reason]")
    return Kick(words[0], words[1], words[2] if len(words) == 3 else None)


def _leave(argument: str) -> Leave:
    words = argument.split(None, 1)
    if not words:
        raise MalformedLine("usage: /leave #room [reason]")
    return Leave(words[0], words[1] if len(words) == 2 else None)


def _action(argument: str) -> SendRoom | SendDirect:
    words = argument.split(None, 1)
    if len(words) != 2:
        raise MalformedLine(ACTION_USAGE)
    target, text = words
    if target[0] == "#":
        return SendRoom(target, text, True)
    return SendDirect(target, text, True)


def _mode(argument: str) -> ShowRoomModes | SetRoomMode:
    words = argument.split()
    if len(words) == 1:
        return ShowRoomModes(words[0])
    if len(words) != 2 or len(words[1]) != 2 or words[1][0] not in "+-":
        raise MalformedLine(MODE_USAGE)
    mode = ROOM_MODE_LETTERS.get(words[1][1])
    if mode is None:
        raise MalformedLine(MODE_USAGE)
    return SetRoomMode(words[0], mode, words[1][0] == "+")


def _history(argument: str) -> History:
    words = argument.split()
    if len(words) == 1:
        return History(words[0], None)
    if len(words) == 2 and words[1].isdecimal() and words[1].isascii():
        return History(words[0], int(words[1]))
    raise MalformedLine("usage: /history #room [N]")


_PASSWORD_LINE = re.compile(
    r"(?P<keep>\s*(?:#\S+|/login\s+\S+|/register|/password|/pass)\s+)(?P<secret>\S.*)",
    re.IGNORECASE | re.DOTALL,
)
PASSWORD_MASK = "********"
"""What stands for a password on screen or in an error: the same whatever its length."""

_QUOTED_LENGTH = 40


def split_password(line: str) -> tuple[str, str] | None:
    """
    C{line} cut where the password it carries starts, as (before, password).

    Lines that carry one: C{#name password}, C{/login name password},
    C{/register password}, C{/password old new} and C{/pass password}; for
    the others None.
    """
    found = _PASSWORD_LINE.fullmatch(line)
    if found is None:
        return None
    return found["keep"], found["secret"]


def quote_line_start(line: bytes) -> str:
    """
    The start of a client's line, for an error to say which line it refused.

    At most 40 characters; a password in it is masked, and control
    characters are replaced, so the quote is safe to show on a terminal.
    """
    text = line[: 4 * _QUOTED_LENGTH].decode(errors="replace").strip()
    parts = split_password(text)
    if parts is not None:
        text = parts[0] + PASSWORD_MASK
    text = CONTROL_CHARACTERS.sub("\N{REPLACEMENT CHARACTER}", text)
    if len(text) > _QUOTED_LENGTH:
        text = text[: _QUOTED_LENGTH - 1] + "…"
    return text


def _parse_command(line: str) -> Command:
    words = line[1:].split(None, 1)
    name = words[0].lower() if words else ""
    argument = words[1].strip() if len(words) == 2 else ""
    match name:
        case "login":
            return _login(argument)
        case "register":
            return _create_account(argument)
        case "password":
            return _change_password(argument)
        case "pass":
            if not argument:
                raise MalformedLine("usage: /pass password")
            return ServerPassword(argument)
        case "history":
            return _history(argument)
        case "join":
            return Join(_room_argument(name, argument))
        case "leave":
            return _leave(argument)
        case "who":
            return Who(_room_argument(name, argument) if argument else None)
        case "whois":
            if len(argument.split()) != 1:
                raise MalformedLine("usage: /whois name")
            return Whois(argument)
        case "away":
            return SetAway(argument or None)
        case "me":
            return _action(argument)
        case "topic":
            return _topic(argument)
        case "op" | "deop":
            return SetOperator(*_room_and_name(name, argument), name == "op")
        case "voice" | "devoice":
            return SetVoice(*_room_and_name(name, argument), name == "voice")
        case "mode":
            return _mode(argument)
        case "kick":
            return _kick(argument)
        case "ban" | "unban":
            return SetBan(*_room_and_name(name, argument), name == "ban")
        case "bans":
            return ListBans(_room_argument(name, argument))
        case "rooms":
            _no_argument(name, argument)
            return ListRooms()
        case "help":
            _no_argument(name, argument)
            return Help()
        case "quit":
            return Quit(argument or None)
        case "ping":
            _no_argument(name, argument)
            return Ping()
        case "limits":
            _no_argument(name, argument)
            return ShowLimits()
    raise UnknownCommand(name)


def parse_line(data: bytes) -> Command | None:
    """
    Parse one line from a client (without its line ending).

    @return: the command, or None for a blank line, which is ignored.
    @raise ChatError: the line is malformed (not UTF-8, say); the error says how.
    """
    try:
        line = data.decode()
    except UnicodeDecodeError:
        if isinstance(data, TelnetMangledLine):
            raise TelnetMangled() from None
        raise InvalidEncoding() from None
    if CONTROL_CHARACTERS.search(line):
        raise ControlCharacters()
    line = line.strip()
    if not line:
        return None
    first = line[0]
    if first == "@":
        target, colon, text = line[1:].partition(":")
        target = target.strip()
        if not colon or not target:
            raise MalformedLine("expected @name:message or @#room:message")
        text = text.strip()
        if not text:
            raise EmptyMessage()
        if target[0] == "#":
            return SendRoom(target, text)
        return SendDirect(target, text)
    if first == "#":
        words = line[1:].split(None, 1)
        if len(words) == 2:
            return Register(words[0], words[1].strip())
        return Register(line[1:].strip())
    if first == "/":
        return _parse_command(line)
    raise MalformedLine("unrecognised line: start with #name, @name:, @#room: or / (try /help)")


def _listing(title: str, items: Sequence[str]) -> str:
    if not items:
        return f"* {title} (0)"
    return f"* {title} ({len(items)}): {', '.join(items)}"


def _follow(number: int, noun: str) -> str:
    return f"1 {noun} follows" if number == 1 else f"{number} {noun}s follow"


def format_time(posix: float) -> str:
    """A moment as ISO 8601 UTC to the second: C{2026-11-28T18:00:05Z}."""
    return datetime.fromtimestamp(posix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _logged_in(event: LoggedIn) -> str:
    if event.waiting:
        return f"* logged in as {event.nick}; {_follow(event.waiting, 'waiting message')}"
    return f"* logged in as {event.nick}"


def _left(event: Left) -> str:
    if event.reason is None:
        return f"* {event.nick} left {event.room}{' (disconnected)' if event.disconnected else ''}"
    if event.disconnected:
        return f"* {event.nick} left {event.room} (disconnected: {event.reason})"
    return f"* {event.nick} left {event.room}: {event.reason}"


def _members(event: UserList) -> str:
    if not event.operators and not event.voiced:
        return _listing(event.room or "online", event.nicks)
    operators, voiced = set(event.operators), set(event.voiced)
    return _listing(
        event.room or "online",
        [
            f"@{nick}" if nick in operators else f"+{nick}" if nick in voiced else nick
            for nick in event.nicks
        ],
    )


def _room_modes(event: RoomModes) -> str:
    letters = "".join(sorted(_MODE_LETTER[mode] for mode in event.modes))
    return f"* modes of {event.room}: +{letters}; created {format_time(event.created_at)}"


def _mode_change(mode: str, on: bool) -> str:
    return f"{'+' if on else '-'}{_MODE_LETTER[mode]} ({_MODE_MEANING[mode, on]})"


def _user_info(event: UserInfo) -> str:
    away = "" if event.away is None else f"; away: {event.away}"
    return f"* {event.nick}: user {event.user}, real name {event.real_name}{away}"


def _away_changed(event: AwayChanged) -> str:
    if event.message is None:
        return "* you are no longer marked as away"
    return f"* you are marked as away: {event.message}"


def _room_topic(event: RoomTopic) -> str:
    if event.topic is None:
        return f"* {event.room} has no topic"
    return f"* topic of {event.room}: {event.topic}"


def _topic_changed(event: TopicChanged) -> str:
    if event.topic is None:
        return f"* {event.nick} cleared the topic of {event.room}"
    return f"* {event.nick} set the topic of {event.room}: {event.topic}"


def _operator_changed(event: OperatorChanged) -> str:
    if event.operator:
        return f"* {event.by} made {event.nick} an operator of {event.room}"
    return f"* {event.by} took operator status in {event.room} from {event.nick}"


def _kicked(event: Kicked) -> str:
    reason = "" if event.reason is None else f": {event.reason}"
    return f"* {event.nick} was kicked from {event.room} by {event.by}{reason}"


# One formatter per kind of event, looked up by type: a match statement over
# class patterns costs several times more, and this runs for every message.
_FORMATS: dict[type, Callable[[Any], str]] = {
    DirectMessage: lambda e: f"<{e.sender}> * {e.text}" if e.action else f"<{e.sender}> {e.text}",
    RoomMessage: lambda e: (
        f"{e.room} * {e.sender} {e.text}" if e.action else f"{e.room} <{e.sender}> {e.text}"
    ),
    Replayed: lambda e: f"[{format_time(e.sent_at)}] {format_event(e.message)}",
    LoggedIn: _logged_in,
    AccountCreated: lambda e: (
        f"* {e.nick} is now a registered account; log in with #{e.nick} <password>"
    ),
    PasswordChanged: lambda e: "* password changed",
    PasswordAccepted: lambda e: (
        "* server password accepted" if e.needed else "* this server has no password"
    ),
    StoredForLater: lambda e: f"* {e.recipient} is offline; message stored for delivery at login",
    HistoryStart: lambda e: f"* history of {e.room}: {_follow(e.count, 'message')}",
    Joined: lambda e: f"* {e.nick} joined {e.room}",
    Left: _left,
    Renamed: lambda e: f"* {e.old} is now {e.new}",
    Registered: lambda e: f"* registered as {e.nick}",
    UserList: _members,
    UserInfo: _user_info,
    IsAway: lambda e: f"* {e.nick} is away: {e.message}",
    AwayChanged: _away_changed,
    Counts: lambda e: (
        f"* counts: users={e.users} unregistered={e.unregistered} rooms={e.rooms}"
        f" peak-users={e.peak_users}"
    ),
    RoomList: lambda e: _listing("rooms", [f"{name} {count}" for name, count in e.rooms]),
    RoomTopic: _room_topic,
    TopicChanged: _topic_changed,
    OperatorChanged: _operator_changed,
    Kicked: _kicked,
    VoiceChanged: lambda e: (
        f"* {e.by} gave {e.nick} a voice in {e.room}"
        if e.voiced
        else f"* {e.by} took {e.nick}'s voice in {e.room}"
    ),
    RoomModeChanged: lambda e: f"* {e.by} set {e.room} {_mode_change(e.mode, e.on)}",
    RoomModes: _room_modes,
    BanChanged: lambda e: f"* {e.by} {'banned' if e.banned else 'unbanned'} {e.nick} from {e.room}",
    BanList: lambda e: _listing(f"bans of {e.room}", e.nicks),
    LimitsInfo: lambda e: (
        f"* limits: flood-rate={e.flood_rate:g} flood-burst={e.flood_burst} "
        f"max-line-length={e.max_line_length} idle-timeout={e.idle_timeout:g}"
    ),
    Notice: lambda e: f"* {e.text}",
}


def format_event(event: Event) -> str:
    """Render C{event} as one line of text, without the line ending."""
    formatter = _FORMATS.get(type(event))
    if formatter is None:
        raise TypeError(f"not an event: {event!r}")
    return formatter(event)


def _flooding(error: Flooding) -> str:
    lines = "line" if error.rate == 1 else "lines"
    return (
        f"flood limit: at most {error.rate:g} {lines} a second (bursts of {error.burst}); "
        f"line discarded: {error.line_start}"
    )


# How the line protocol words each error (docs/protocol.md, Errors); any other
# error is its plain description.
_ERRORS: dict[type, Callable[[Any], str]] = {
    InvalidEncoding: lambda e: "invalid UTF-8; line discarded",
    TelnetMangled: lambda e: (
        "invalid UTF-8: your telnet client changed non-ASCII characters; "
        "use nc or chatroute-client for non-ASCII text; line discarded"
    ),
    ControlCharacters: lambda e: "control characters are not allowed; line discarded",
    LineTooLong: lambda e: f"line too long (over {e.limit} bytes); discarded",
    MalformedLine: lambda e: e.expected,
    UnknownCommand: lambda e: f"unknown command: /{e.command} (try /help)",
    EmptyMessage: lambda e: "empty message",
    NotRegistered: lambda e: "register first with #yourname",
    InvalidNickname: lambda e: f"invalid nickname: {e.nick!r} ({NAME_RULE})",
    InvalidRoomName: lambda e: f"invalid room name: {e.room!r} (# then {NAME_RULE})",
    NicknameTaken: lambda e: f"nickname taken: {e.nick}",
    NoSuchUser: lambda e: f"no such user: {e.nick}",
    NoSuchRoom: lambda e: f"no such room: {e.room}",
    NotInRoom: lambda e: f"you are not in {e.room}",
    AlreadyInRoom: lambda e: f"you are already in {e.room}",
    OperatorRequired: lambda e: f"you are not an operator of {e.room}",
    NoSuchMember: lambda e: f"{e.nick} is not in {e.room}",
    AlreadyOperator: lambda e: f"{e.nick} is already an operator of {e.room}",
    NotOperator: lambda e: f"{e.nick} is not an operator of {e.room}",
    AlreadyVoiced: lambda e: f"{e.nick} already has a voice in {e.room}",
    NotVoiced: lambda e: f"{e.nick} has no voice in {e.room}",
    Moderated: lambda e: f"{e.room} is moderated: only operators and voiced members send",
    ModeUnchanged: lambda e: f"{e.room} already has {'+' if e.on else '-'}{_MODE_LETTER[e.mode]}",
    BannedFromRoom: lambda e: f"you are banned from {e.room}",
    AlreadyBanned: lambda e: f"{e.nick} is already banned from {e.room}",
    NotBanned: lambda e: f"{e.nick} is not banned from {e.room}",
    TopicTooLong: lambda e: f"topic too long (over {e.limit} characters)",
    ReasonTooLong: lambda e: f"reason too long (over {e.limit} characters)",
    InternalError: lambda e: "internal server error; the request was not completed",
    BackplaneUnavailable: lambda e: "the other servers cannot be reached now; not done, try again",
    AccountExists: lambda e: f"{e.nick} is already registered",
    NoSuchAccount: lambda e: f"no such account: {e.nick}",
    MailboxFull: lambda e: f"{e.nick} is offline and has too many waiting messages; not stored",
    NameRegistered: lambda e: f"{e.nick} is a registered account; log in with #{e.nick} <password>",
    LoginFailed: lambda e: "wrong nickname or password",
    WrongPassword: lambda e: "wrong password",
    LoginThrottled: lambda e: f"too many failed logins; try again in {max(1, round(e.seconds))} s",
    NotLoggedIn: lambda e: (
        "log in first (#name <password>), or /register <password> to create an account"
    ),
    AccountRequired: lambda e: (
        "this server requires an account: /register <password> to create one, "
        "or log in with #name <password>"
    ),
    BadPassword: lambda e: (
        f"a password must be {e.shortest} to {e.longest} characters, spaces allowed (a run "
        "counts as one; white space at either end is dropped); in /password, quote one with "
        'spaces: /password "old words" "new words"'
    ),
    Flooding: _flooding,
    PasswordNeedsTLS: lambda e: (
        "passwords are accepted only over TLS; connect to the server's TLS port"
    ),
    ServerPasswordRequired: lambda e: "this server has a password: /pass PASSWORD first",
    WrongServerPassword: lambda e: "wrong server password; closing",
    NotReading: lambda e: f"{e.nick} is not reading messages and was disconnected; not delivered",
    ServerFull: lambda e: f"the server is full ({e.limit} connections); closing",
    TooManyConnections: lambda e: (
        f"too many connections from {e.address} (at most {e.limit}); closing"
    ),
}


def format_error(error: ChatError) -> str:
    """The text of the C{! ...} line answering with C{error}, without the C{! }."""
    formatter = _ERRORS.get(type(error))
    return str(error) if formatter is None else formatter(error)


@implementer(IWireFormat)
class LineFormat:
    """
    The line protocol on the wire: a line of UTF-8 to a command; an event
    or an error to CR LF terminated lines.

    It remembers the last event it encoded, so a room message fanned out to
    every member is formatted and encoded once, not once per member.
    """

    __slots__ = ("last_encoding", "last_event")

    def __init__(self) -> None:
        self.last_event: Event | None = None
        self.last_encoding = b""

    parse = staticmethod(parse_line)
    """The command a line (without its ending) asks for; None for a blank line."""

    def encode(self, event: Event) -> bytes:
        """The event as UTF-8 lines, each ending in CR LF."""
        if event is not self.last_event:
            self.last_encoding = (format_event(event) + "\r\n").encode()
            self.last_event = event
        return self.last_encoding

    def encode_error(self, error: ChatError) -> bytes:
        """The error as a C{! ...} line."""
        return f"! {format_error(error)}\r\n".encode()

    def help_lines(self) -> Sequence[str]:
        """The commands, a line each, to answer C{/help} with."""
        return HELP

    def quote(self, line: bytes) -> str:
        """The start of a line, for an error to say which line it refused (L{quote_line_start})."""
        return quote_line_start(line)
