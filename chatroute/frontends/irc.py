"""
IRC on TCP and TLS: C{--listen-irc ENDPOINT}, for irssi, WeeChat, HexChat and the like.

IRC is one more front end on the session layer: L{IRCProtocol} frames lines
(L{ChatProtocol}'s framing, without telnet), and L{IRCFormat}, one per
connection, is its L{IWireFormat}. It knows the client's nickname, so it can
word the core's events and errors as IRC lines and numerics addressed to
it. What IRC has and the core has not stays here: CAP negotiation, SASL,
the NICK + USER bookkeeping of registration, PING, user modes, ban
masks and the welcome burst. Everything else becomes the core's commands, carried out
by the L{ConnectionSession} in order, like any other front end's.

Protocol-level commands are answered from L{IRCFormat.parse}, which the
session calls when the line's turn comes (after the lines before it that
wait for storage); the answers go through the session's C{deliver} as
L{Reply} events, so they keep their place among the other replies (irctest
and clients rely on a PONG coming after the answers to the lines before
its PING).

IRC messages are parsed here (L{parse_message}: tags, prefix, command,
parameters): it is a few lines, where Twisted's C{parsemsg} knows no tags
and the PyPI parsers (C{irc}, C{irctokens}) would be a dependency for them;
the numerics' names are Twisted's (C{twisted.words.protocols.irc}), with the
IRCv3 ones it lacks named here. docs/protocol.md ("IRC") maps IRC to the
line protocol.
"""

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ServerFactory
from twisted.words.protocols import irc as numerics
from zope.interface import implementer

from chatroute.core.commands import (
    Command,
    CreateAccount,
    Join,
    Kick,
    Leave,
    ListBans,
    ListRooms,
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
    ShowCounts,
    ShowRoomModes,
    ShowTopic,
    Who,
    Whois,
)
from chatroute.core.errors import (
    AccountExists,
    AccountRequired,
    AlreadyBanned,
    AlreadyInRoom,
    AlreadyOperator,
    AlreadyVoiced,
    BadPassword,
    BannedFromRoom,
    ChatError,
    ControlCharacters,
    EmptyMessage,
    Flooding,
    InvalidEncoding,
    InvalidNickname,
    InvalidRoomName,
    LineTooLong,
    LoginFailed,
    LoginThrottled,
    MailboxFull,
    Moderated,
    ModeUnchanged,
    NameRegistered,
    NicknameTaken,
    NoSuchMember,
    NoSuchRoom,
    NoSuchUser,
    NotBanned,
    NotInRoom,
    NotOperator,
    NotRegistered,
    NotVoiced,
    OperatorRequired,
    PasswordNeedsTLS,
    ServerFull,
    ServerPasswordRequired,
    TooManyConnections,
    UnknownCommand,
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
from chatroute.core.session import Hub
from chatroute.frontends.line import ChatProtocol
from chatroute.frontends.syntax import (
    CONTROL_CHARACTERS,
    ROOM_MODE_LETTERS,
    format_error,
    format_time,
)
from chatroute.storage import name_key

SERVER = "chatroute"
"""The server's name in prefixes and numerics unless C{--irc-server-name} sets one."""
HOST = "chatroute"
"""The host part of every user's mask: chatroute shows no one's address."""
VERSION = "chatroute-0.1.0"
HIDDEN_IP = "255.255.255.255"
"""WHOX's IP address field: chatroute shows no one's address."""
WHOX_FIELDS = "tcuihsnfdlaor"
"""WHOX's fields, in the order a 354 gives them."""

IRC_LINE = 512
"""Bytes in an IRC line with its CR LF: what the server's lines keep to."""
SASL_CHUNK = 400

# Numerics Twisted names; the IRCv3 ones (SASL, 417, 696) it does not know are named here.
RPL_WELCOME = numerics.RPL_WELCOME
RPL_YOURHOST = numerics.RPL_YOURHOST
RPL_CREATED = numerics.RPL_CREATED
RPL_MYINFO = numerics.RPL_MYINFO
RPL_ISUPPORT = numerics.RPL_ISUPPORT
RPL_UMODEIS = numerics.RPL_UMODEIS
RPL_LUSERCLIENT = numerics.RPL_LUSERCLIENT
RPL_LUSERME = numerics.RPL_LUSERME
RPL_LUSERUNKNOWN = numerics.RPL_LUSERUNKNOWN
RPL_LUSERCHANNELS = numerics.RPL_LUSERCHANNELS
RPL_LOCALUSERS = "265"
RPL_GLOBALUSERS = "266"
RPL_AWAY = numerics.RPL_AWAY
RPL_USERHOST = numerics.RPL_USERHOST
RPL_UNAWAY = numerics.RPL_UNAWAY
RPL_NOWAWAY = numerics.RPL_NOWAWAY
RPL_WHOISUSER = numerics.RPL_WHOISUSER
RPL_WHOISSERVER = numerics.RPL_WHOISSERVER
RPL_WHOISCHANNELS = numerics.RPL_WHOISCHANNELS
RPL_ENDOFWHOIS = numerics.RPL_ENDOFWHOIS
RPL_ENDOFWHOWAS = numerics.RPL_ENDOFWHOWAS
RPL_ENDOFWHO = numerics.RPL_ENDOFWHO
RPL_LISTSTART = numerics.RPL_LISTSTART
RPL_LIST = numerics.RPL_LIST
RPL_LISTEND = numerics.RPL_LISTEND
RPL_CHANNELMODEIS = numerics.RPL_CHANNELMODEIS
RPL_WHOREPLY = numerics.RPL_WHOREPLY
RPL_WHOSPCRPL = "354"
RPL_WHOISACCOUNT = "330"
RPL_NAMREPLY = numerics.RPL_NAMREPLY
RPL_ENDOFNAMES = numerics.RPL_ENDOFNAMES
RPL_NOTOPIC = numerics.RPL_NOTOPIC
RPL_TOPIC = numerics.RPL_TOPIC
RPL_TOPICWHOTIME = "333"
RPL_CREATIONTIME = "329"
RPL_BANLIST = numerics.RPL_BANLIST
RPL_ENDOFBANLIST = numerics.RPL_ENDOFBANLIST
ERR_NOSUCHNICK = numerics.ERR_NOSUCHNICK
ERR_NOSUCHCHANNEL = numerics.ERR_NOSUCHCHANNEL
ERR_WASNOSUCHNICK = numerics.ERR_WASNOSUCHNICK
ERR_CANNOTSENDTOCHAN = numerics.ERR_CANNOTSENDTOCHAN
ERR_NOORIGIN = numerics.ERR_NOORIGIN
ERR_NORECIPIENT = numerics.ERR_NORECIPIENT
ERR_NOTEXTTOSEND = numerics.ERR_NOTEXTTOSEND
ERR_UNKNOWNCOMMAND = numerics.ERR_UNKNOWNCOMMAND
ERR_NOMOTD = numerics.ERR_NOMOTD
ERR_NONICKNAMEGIVEN = numerics.ERR_NONICKNAMEGIVEN
ERR_ERRONEUSNICKNAME = numerics.ERR_ERRONEUSNICKNAME
ERR_NICKNAMEINUSE = numerics.ERR_NICKNAMEINUSE
ERR_USERNOTINCHANNEL = numerics.ERR_USERNOTINCHANNEL
ERR_NOTONCHANNEL = numerics.ERR_NOTONCHANNEL
ERR_NOTREGISTERED = numerics.ERR_NOTREGISTERED
ERR_NEEDMOREPARAMS = numerics.ERR_NEEDMOREPARAMS
ERR_ALREADYREGISTRED = numerics.ERR_ALREADYREGISTRED
ERR_PASSWDMISMATCH = numerics.ERR_PASSWDMISMATCH
ERR_UNKNOWNMODE = numerics.ERR_UNKNOWNMODE
ERR_BANNEDFROMCHAN = numerics.ERR_BANNEDFROMCHAN
ERR_CHANOPRIVSNEEDED = numerics.ERR_CHANOPRIVSNEEDED
ERR_UMODEUNKNOWNFLAG = numerics.ERR_UMODEUNKNOWNFLAG
ERR_USERSDONTMATCH = numerics.ERR_USERSDONTMATCH
ERR_INVALIDCAPCMD = "410"
ERR_INPUTTOOLONG = "417"
ERR_NEEDREGGEDNICK = "477"
ERR_BADCHANNAME = "479"
RPL_LOGGEDIN = "900"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"
ERR_INVALIDMODEPARAM = "696"

USER_MODES = "r"
"""
The user modes (004): C{r}, set by the server while the client is logged in
to the account of its nickname. No C{i}: invisibility would hide a user from
IRC's WHO masks only, while anyone's C{/who} on the line protocol or the web
lists everyone online, so it would promise what it cannot keep.
"""
_QUIET_USER_MODES = frozenset("+-ir")
"""
The letters of a user mode change answered with the modes as they stand
(221), not refused (501): C{i}, which clients ask for at every connect, and
C{r}, which is the server's to set.
"""

AWAYLEN = 200
"""The longest away message kept; a longer one is cut."""

ISUPPORT = (
    f"AWAYLEN={AWAYLEN}",
    "CASEMAPPING=ascii",
    "CHANMODES=b,,,mnst",
    "CHANNELLEN=33",
    "CHANTYPES=#",
    "NETWORK=chatroute",
    "NICKLEN=32",
    "PREFIX=(ov)@+",
    "TARGMAX=JOIN:,KICK:,NAMES:,NOTICE:,PART:,PRIVMSG:",
    "UTF8ONLY",
    "WHOX",
)
"""
What the server supports (005, with C{TOPICLEN} and C{KICKLEN} from the
router's settings): ASCII case mapping as the core folds names, its name
lengths, channels that are always C{+n} (only members send), the core's room
modes C{+m} (moderated), C{+s} (secret) and C{+t} (only operators set the
topic, by default), bans of nicknames (C{+b}), operators and voice
(C{PREFIX=(ov)@+}), UTF-8 only, and WHOX (C{WHO mask %fields,token}).
"""

CAPABILITIES = {
    "multi-prefix": "",
    "sasl": "PLAIN",
    "server-time": "",
    "userhost-in-names": "",
}
"""
The IRCv3 capabilities offered, with their CAP LS 302 values. multi-prefix
shows both C{@} and C{+} of a voiced operator; userhost-in-names puts masks
in 353; server-time puts a message from the past's time in a C{time} tag
rather than its text.
"""

# Targets of these commands may be comma-separated lists: each becomes a line.
_LIST_COMMANDS = frozenset({b"JOIN", b"PART", b"PRIVMSG", b"NOTICE", b"NAMES"})
# IRC formatting (bold, colours, italics, ...): taken out of messages, so the
# line protocol's terminals get plain text.
_FORMATTING = re.compile(r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]")


@dataclass(frozen=True, slots=True)
class Message:
    """One IRC message: its IRCv3 tags, the prefix (None if none), the command and parameters."""

    command: str
    params: list[str] = field(default_factory=list)
    prefix: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def split_kick(line: bytes, start: int) -> list[bytes]:
    """
    C{KICK #c a,b :reason} as a C{KICK} of each nickname, and
    C{KICK #a,#b x,y} as C{#a x} and C{#b y}; anything else as it is.

    @param start: where the command is among C{line}'s words (after a prefix).
    """
    words = line.split(b" ", start + 3)
    if len(words) < start + 3:
        return [line]
    head = b" ".join([*words[:start], b"KICK"])
    channels, nicks = words[start + 1].split(b","), words[start + 2].split(b",")
    reason = b" " + words[start + 3] if len(words) > start + 3 else b""
    if len(channels) == 1:
        channels = channels * len(nicks)
    if len(nicks) == len(channels) == 1 or len(channels) != len(nicks):
        return [line]
    return [
        b" ".join([head, channel, nick]) + reason
        for channel, nick in zip(channels, nicks, strict=True)
        if channel and nick
    ]


def parse_message(line: str) -> Message | None:
    """
    The IRC message in C{line} (without its line ending); None if blank.

    C{@tags :prefix COMMAND middle params :trailing}; the command is
    upper-cased, tag values are kept unescaped as sent.
    """
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    prefix = None
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        for item in raw.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = value
        rest = rest.lstrip(" ")
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    if not rest.strip():
        return None
    trailing = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    words = rest.split()
    if not words:
        return None
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return Message(words[0].upper(), params, prefix, tags)


def format_message(prefix: str | None, command: str, *params: str) -> str:
    """One IRC line, without its ending; the last parameter is trailing when it must be."""
    parts = [f":{prefix}"] if prefix else []
    parts.append(command)
    if params:
        *middle, last = params
        parts.extend(middle)
        parts.append(f":{last}" if not last or " " in last or last[0] == ":" else last)
    return " ".join(parts)


def mask(nick: str) -> str:
    """C{nick!nick@chatroute}: how a user appears in prefixes (no user name or address shown)."""
    return f"{nick}!{nick}@{HOST}"


def mask_matches(pattern: str, nick: str) -> bool:
    """Whether C{nick} matches the IRC mask C{pattern} (C{*}, C{?}), in any letter case."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char)
        for char in name_key(pattern)
    )
    return re.fullmatch(regex, name_key(nick)) is not None


def parse_whox(argument: str) -> tuple[str, str] | None:
    """
    WHOX's C{%fields[,token]} (C{WHO mask %cnf,42}) as the fields asked for,
    in the order replies give them (C{tcuihsnfdlaor}, whatever the order
    asked), and the token (C{0} if none); None if C{argument} is not one.
    """
    if not argument.startswith("%"):
        return None
    letters, _, token = argument[1:].partition(",")
    return "".join(letter for letter in WHOX_FIELDS if letter in letters), token[:3] or "0"


def server_time(posix: float) -> str:
    """IRCv3 server-time's form of a time: UTC, to the millisecond (C{2026-11-28T18:00:05.000Z})."""
    moment = datetime.fromtimestamp(posix, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def cut_utf8(text: str, size: int) -> list[str]:
    """C{text} in pieces of at most C{size} bytes of UTF-8 each, cut between characters."""
    data = text.encode()
    pieces: list[str] = []
    while len(data) > size:
        end = size
        while end > 0 and (data[end] & 0xC0) == 0x80:  # not inside a character
            end -= 1
        pieces.append(data[:end].decode())
        data = data[end:]
    pieces.append(data.decode())
    return pieces


def ctcp_action(text: str) -> str | None:
    """
    The action in a CTCP ACTION (C{\\x01ACTION waves\\x01}: C{waves}; the
    closing C{\\x01} may be missing), or None if C{text} is not one.
    """
    if not text.startswith("\x01"):
        return None
    verb, _, action = text[1:].removesuffix("\x01").partition(" ")
    return action if verb.upper() == "ACTION" else None


def plain_text(text: str) -> str:
    """
    A message's (a topic's, a reason's) text as the core takes it: IRC
    formatting taken out.

    @raise ControlCharacters: other control characters are in it (they
        would reach the line protocol's terminals).
    @raise EmptyMessage: nothing is left.
    """
    text = _FORMATTING.sub("", text)
    if CONTROL_CHARACTERS.search(text):
        raise ControlCharacters()
    if not text.strip():
        raise EmptyMessage()
    return text


# Errors the IRC syntax itself finds; the session's one handler answers them
# through encode_error, as it does the core's.


@dataclass(frozen=True)
class NeedMoreParams(ChatError):
    """A command lacks parameters (461)."""

    command: str
    summary: ClassVar[str] = "{command}: not enough parameters"


@dataclass(frozen=True)
class AlreadyRegistered(ChatError):
    """USER or PASS after registration (462)."""

    summary: ClassVar[str] = "already registered"


@dataclass(frozen=True)
class NoOrigin(ChatError):
    """PING without a token (409)."""

    summary: ClassVar[str] = "no origin"


@dataclass(frozen=True)
class NoRecipient(ChatError):
    """PRIVMSG or NOTICE without a target (411)."""

    command: str
    summary: ClassVar[str] = "no recipient given ({command})"


@dataclass(frozen=True)
class NoNickname(ChatError):
    """NICK without a nickname (431)."""

    summary: ClassVar[str] = "no nickname given"


@dataclass(frozen=True)
class InvalidCapCommand(ChatError):
    """A CAP subcommand that does not exist (410)."""

    subcommand: str
    summary: ClassVar[str] = "invalid CAP command: {subcommand}"


@dataclass(frozen=True)
class SaslFailed(ChatError):
    """AUTHENTICATE that cannot succeed: a mechanism not offered, a malformed message (904)."""

    summary: ClassVar[str] = "SASL authentication failed"


@dataclass(frozen=True)
class SaslTooLong(ChatError):
    """An AUTHENTICATE chunk over 400 bytes (905)."""

    summary: ClassVar[str] = "SASL message too long"


@dataclass(frozen=True)
class SaslAborted(ChatError):
    """C{AUTHENTICATE *} (906)."""

    summary: ClassVar[str] = "SASL authentication aborted"


@dataclass(frozen=True)
class SaslAlready(ChatError):
    """AUTHENTICATE when already logged in (907)."""

    summary: ClassVar[str] = "already logged in"


@dataclass(frozen=True)
class UnknownMode(ChatError):
    """A channel mode chatroute does not have, or C{-n}, which it always has (472)."""

    letter: str
    summary: ClassVar[str] = "no channel mode {letter} to change"


@dataclass(frozen=True)
class BanMaskNotSupported(ChatError):
    """A ban mask that is not of one nickname (C{nick}, C{nick!*@*}) (696)."""

    room: str
    mask: str
    summary: ClassVar[str] = "bans are of nicknames: {mask}"


def ban_nick(room: str, mask: str) -> str:
    """
    The nickname a ban mask stands for: C{bob}, C{bob!*}, C{bob!*@*},
    C{bob!bob@chatroute} (the mask chatroute shows) are all C{bob}.

    @raise BanMaskNotSupported: the mask has wildcards in its nickname, or
        a user or host part that is not C{*} or chatroute's.
    """
    nick, _, rest = mask.partition("!")
    user, _, host = rest.partition("@")
    user_ok = user in ("", "*") or name_key(user) == name_key(nick)
    host_ok = host.lower() in ("", "*", HOST) and (user or "@" not in rest)
    if not nick or "*" in nick or "?" in nick or not (user_ok and host_ok):
        raise BanMaskNotSupported(room, mask)
    return nick


def ban_mask(nick: str) -> str:
    """How a ban of the nickname C{nick} is shown: C{nick!*@*}."""
    return f"{nick}!*@*"


def split_modes(line: bytes) -> list[bytes]:
    """
    A channel MODE line as one line per change: C{MODE #a +ob bob carol!*@*}
    as C{MODE #a +o bob} and C{MODE #a +b carol!*@*}; C{o} and C{v} take an
    argument, C{b} one if there is one left (without, it asks for the ban list). Any
    other line, or one with a single change, is kept as it is.
    """
    try:
        message = parse_message(line.decode())
    except UnicodeDecodeError:
        return [line]
    if message is None or len(message.params) < 2 or not message.params[0].startswith("#"):
        return [line]
    target, modes, *arguments = message.params
    changes: list[tuple[str, ...]] = []
    sign = "+"
    for letter in modes:
        if letter in "+-":
            sign = letter
        elif letter in "obv" and arguments:
            changes.append((sign + letter, arguments.pop(0)))
        else:
            changes.append((sign + letter,))
    if len(changes) <= 1:
        return [line]
    return [format_message(None, "MODE", target, *change).encode() for change in changes]


@dataclass(frozen=True)
class UserModeNotSupported(ChatError):
    """
    A change of a user mode there is not (501; C{i} and C{r} are answered
    with 221 instead), or of another user's modes (502, C{other}).
    """

    other: bool
    summary: ClassVar[str] = "no user modes"


@dataclass(slots=True)
class Reply(Notice):
    """
    Lines that L{IRCFormat} answers with itself (CAP, PONG, the welcome
    burst), ready for the wire: C{text} holds them with their CR LF. They are
    delivered through the session, so they keep their place among its
    replies.
    """


@implementer(IWireFormat)
class IRCFormat:
    """
    One IRC connection's wire format: its lines to the core's commands, the
    core's events and errors to IRC lines addressed to its nickname.

    It keeps what IRC needs that the core does not: the nickname and user
    name being registered, the CAP negotiation, SASL's state, the away
    message, which rooms the client is in (for C{JOIN 0}) and which command
    is being carried out (an error's numeric depends on it: 404 for a
    message, 442 for PART).

    @ivar nick: the nickname the core knows the client by; None until it has one.
    """

    # Each event is encoded for this client alone (its nickname, its state).
    last_event = None
    last_encoding = b""

    def __init__(
        self,
        server: str = SERVER,
        topic_length: int = 390,
        reason_length: int = 390,
        server_password: bool = False,
    ) -> None:
        """
        @param server: the server's name, for prefixes and numerics.
        @param topic_length: the longest topic the router takes (C{TOPICLEN}).
        @param reason_length: the longest reason for a kick it takes (C{KICKLEN}).
        @param server_password: the server has a connect password, so C{PASS}
            gives it, rather than logging in to an account.
        """
        self.server = server
        self._server_password = server_password
        self._lengths = (f"KICKLEN={reason_length}", f"TOPICLEN={topic_length}")
        self.nick: str | None = None
        self._deliver: Callable[[Event], None] = lambda event: None
        self._welcomed = False
        self._registering = False
        self._wanted_nick: str | None = None
        self._user: str | None = None
        self._realname = ""
        self._password: str | None = None
        self._negotiating = False
        self._caps: set[str] = set()
        self._cap_version = 301
        self._sasl_mechanism: str | None = None
        self._sasl_data = ""
        self._sasl_pending = False
        self._account: str | None = None
        self._command = ""
        self._arguments: list[str] = []
        self._tags: dict[str, str] = {}
        self._rooms: dict[str, str] = {}
        self._last_quit: str | None = None
        self._quit_reason = ""

    def attach(self, deliver: Callable[[Event], None]) -> None:
        """Answer through C{deliver}, the session's: in order with its other replies."""
        self._deliver = deliver

    # Lines in.

    def expand(self, line: bytes) -> list[bytes]:
        """
        C{line} as the lines to carry out: C{JOIN #a,#b} as C{JOIN #a} and
        C{JOIN #b} (keys paired in order), C{PRIVMSG a,b :hi} as one per
        target, C{JOIN 0} as a PART of each room the client is in, a channel
        MODE as one line per change (L{split_modes}).
        """
        words = line.split(b" ", 3)
        start = 1 if words[0][:1] in (b"@", b":") else 0
        if len(words) > start + 1 and words[start][:1] == b":":
            return [line]
        if len(words) <= start + 1:
            return [line]
        command, targets = words[start].upper(), words[start + 1]
        if command == b"MODE":
            return split_modes(line)
        rest = b" ".join(words[start + 2 :])
        if command == b"JOIN" and targets == b"0":
            return [b"PART " + room.encode() for room in self._rooms.values()]
        if command == b"KICK":
            return split_kick(line, start)
        if command not in _LIST_COMMANDS or b"," not in targets:
            return [line]
        head = b" ".join(words[:start])
        head = head + b" " if head else b""
        split = [target for target in targets.split(b",") if target]
        if command == b"JOIN":
            keys = rest.split(b",") if rest and not rest.startswith(b":") else []
            return [
                head + b"JOIN " + target + (b" " + keys[index] if index < len(keys) else b"")
                for index, target in enumerate(split)
            ]
        tail = b" " + rest if rest else b""
        if command == b"NAMES" and len(split) > 1:
            # One joint reply: a 353 per channel, then one 366 naming them all.
            joint = b",".join(split)
            return [
                _tagged(head, _NAMES_END + b"=" + joint if index == len(split) - 1 else _NAMES_MORE)
                + b"NAMES "
                + target
                + tail
                for index, target in enumerate(split)
            ]
        return [head + command + b" " + target + tail for target in split]

    def parse(self, line: bytes) -> Command | None:
        """
        The core's command for one IRC line; None for a line answered here
        (CAP, PING, ...) or that asks for nothing.

        @raise ChatError: the line is malformed or refused; encode_error words it.
        """
        try:
            text = line.decode()
        except UnicodeDecodeError:
            self._command = "*"
            raise InvalidEncoding() from None
        message = parse_message(text)
        if message is None:
            return None
        self._command = message.command
        self._arguments = message.params
        self._tags = message.tags
        handler = _COMMANDS.get(message.command)
        if handler is None:
            raise UnknownCommand(message.command)
        if not self._welcomed and message.command not in _BEFORE_WELCOME:
            raise NotRegistered()
        return handler(self, message.params)

    def _reply(self, *lines: str) -> None:
        self._deliver(Reply("".join(f"{line}\r\n" for line in lines)))

    def _numeric(self, code: str, *params: str) -> str:
        return format_message(self.server, code, self.nick or "*", *params)

    def _cap(self, params: list[str]) -> None:
        if not params:
            raise NeedMoreParams("CAP")
        sub = params[0].upper()
        target = self.nick or "*"
        if sub == "LS":
            if not self._welcomed:
                self._negotiating = True
            if len(params) > 1 and params[1].isdigit():
                self._cap_version = int(params[1])
            offered = (
                f"{name}={value}" if self._cap_version >= 302 and value else name
                for name, value in CAPABILITIES.items()
            )
            self._reply(format_message(self.server, "CAP", target, "LS", " ".join(offered)))
        elif sub == "LIST":
            self._reply(
                format_message(self.server, "CAP", target, "LIST", " ".join(sorted(self._caps)))
            )
        elif sub == "REQ":
            if not self._welcomed:
                self._negotiating = True
            wanted = params[1].split() if len(params) > 1 else []
            if wanted and all(name.lstrip("-") in CAPABILITIES for name in wanted):
                for name in wanted:
                    if name.startswith("-"):
                        self._caps.discard(name[1:])
                    else:
                        self._caps.add(name)
                answer = "ACK"
            else:
                answer = "NAK"
            self._reply(format_message(self.server, "CAP", target, answer, " ".join(wanted)))
        elif sub == "END":
            self._negotiating = False
            return None
        else:
            raise InvalidCapCommand(params[0])
        return None

    def _cap_command(self, params: list[str]) -> Command | None:
        self._cap(params)
        return self._complete_registration()

    def _authenticate(self, params: list[str]) -> Command | None:
        if not params:
            raise NeedMoreParams("AUTHENTICATE")
        argument = params[0]
        if self._account is not None:
            raise SaslAlready()
        if argument == "*":
            self._sasl_mechanism, self._sasl_data = None, ""
            raise SaslAborted()
        if self._sasl_mechanism is None:
            if argument.upper() != "PLAIN":
                self._reply(self._numeric(RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms"))
                raise SaslFailed()
            self._sasl_mechanism = "PLAIN"
            self._reply("AUTHENTICATE +")
            return None
        if len(argument) > SASL_CHUNK:
            self._sasl_mechanism, self._sasl_data = None, ""
            raise SaslTooLong()
        if argument != "+":
            self._sasl_data += argument
            if len(argument) == SASL_CHUNK:
                return None  # more to come
        data, self._sasl_mechanism, self._sasl_data = self._sasl_data, None, ""
        try:
            authzid, authcid, password = base64.b64decode(data, validate=True).decode().split("\0")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise SaslFailed() from None
        if authzid and name_key(authzid) != name_key(authcid):
            raise SaslFailed()
        self._sasl_pending = True
        return Register(authcid, password)

    def _pass(self, params: list[str]) -> Command | None:
        if not params:
            raise NeedMoreParams("PASS")
        if self._welcomed:
            raise AlreadyRegistered()
        if self._server_password:
            return ServerPassword(params[0])
        self._password = params[0]
        return None

    def _nick_command(self, params: list[str]) -> Command | None:
        if not params or not params[0]:
            raise NoNickname()
        nick = params[0]
        if self._welcomed:
            if nick == self.nick:
                return None
            return Register(nick)
        self._wanted_nick = nick
        return self._complete_registration()

    def _user_command(self, params: list[str]) -> Command | None:
        if self._welcomed:
            raise AlreadyRegistered()
        if len(params) < 4 or not params[0] or not params[3]:
            raise NeedMoreParams("USER")
        self._user, self._realname = params[0], params[3]
        return self._complete_registration()

    def _complete_registration(self) -> Command | None:
        """Once NICK and USER are in and CAP is done: take the nickname (with PASS, log in)."""
        if (
            self._welcomed
            or self._registering
            or self._negotiating
            or self._wanted_nick is None
            or self._user is None
        ):
            return None
        self._registering = True
        if self._account is not None:  # logged in with SASL: the account is the nickname
            return Register(self._account, None, self._user, self._realname)
        return Register(self._wanted_nick, self._password, self._user, self._realname)

    def _welcome(self) -> list[str]:
        """The welcome burst (001 to 005, then no MOTD); registration is complete."""
        self._welcomed = True
        self._registering = False
        nick = self.nick or "*"
        created = datetime.now(UTC).strftime("%Y-%m-%d")
        tokens = sorted([*ISUPPORT, *self._lengths])
        # 13 a line: with the nickname and the trailing text, IRC's 15 parameters.
        isupport = [
            self._numeric(RPL_ISUPPORT, *tokens[i : i + 13], "are supported by this server")
            for i in range(0, len(tokens), 13)
        ]
        return [
            self._numeric(RPL_WELCOME, f"Welcome to the chatroute IRC network, {mask(nick)}"),
            self._numeric(RPL_YOURHOST, f"Your host is {self.server}, running version {VERSION}"),
            self._numeric(RPL_CREATED, f"This server was created {created}"),
            self._numeric(RPL_MYINFO, self.server, VERSION, USER_MODES, "bmnostv", "bov"),
            *isupport,
            self._numeric(ERR_NOMOTD, "MOTD File is missing"),
            *([self._user_mode_change("+r")] if self._account is not None else []),
        ]

    def _user_modes(self) -> str:
        """The client's user modes (221): C{+r} when logged in to its account, else C{+}."""
        return "+r" if self._account is not None else "+"

    def _user_mode_change(self, change: str) -> str:
        """The server's C{MODE nick :+r} (C{-r}): the client's account changed."""
        return format_message(self.server, "MODE", self.nick or "*", change)

    def _ping(self, params: list[str]) -> None:
        if not params or not params[0]:
            raise NoOrigin()
        self._reply(format_message(self.server, "PONG", self.server, params[0]))

    def _ignore(self, params: list[str]) -> None:
        return None

    def _message(self, params: list[str]) -> Command | None:
        if not params or not params[0]:
            raise NoRecipient(self._command)
        if len(params) < 2 or not params[1]:
            raise EmptyMessage()
        target, text = params[0], params[1]
        action = ctcp_action(text)
        if action is None and text.startswith("\x01"):
            return None  # a CTCP request other than ACTION: nothing to carry
        text = plain_text(text if action is None else action)
        notice = self._command == "NOTICE"
        if target.startswith("#"):
            return SendRoom(target, text, action is not None, notice)
        return SendDirect(target, text, action is not None, notice)

    def _topic(self, params: list[str]) -> Command:
        if not params or not params[0]:
            raise NeedMoreParams("TOPIC")
        room = params[0]
        if len(params) == 1:
            return ShowTopic(room)
        return SetTopic(room, _optional_text(params[1]))

    def _kick(self, params: list[str]) -> Command:
        if len(params) < 2 or not params[0] or not params[1]:
            raise NeedMoreParams("KICK")
        return Kick(params[0], params[1], _optional_text(params[2]) if len(params) > 2 else None)

    def _join(self, params: list[str]) -> Command:
        if not params or not params[0]:
            raise NeedMoreParams("JOIN")
        return Join(params[0])

    def _part(self, params: list[str]) -> Command:
        if not params or not params[0]:
            raise NeedMoreParams("PART")
        return Leave(params[0], _optional_text(params[1]) if len(params) > 1 else None)

    def _names(self, params: list[str]) -> Command:
        return Who(params[0] if params and params[0] else None)

    def _list(self, params: list[str]) -> Command:
        return ListRooms()

    def _who(self, params: list[str]) -> Command:
        if params and params[0].startswith("#"):
            return Who(params[0], details=True)
        return Who(None, details=True)

    def _whois(self, params: list[str]) -> Command:
        # WHOIS [server] nick: the server, if given, is this one.
        if not params or not params[-1]:
            raise NoNickname()
        return Whois(params[-1])

    def _whowas(self, params: list[str]) -> None:
        # No history of nicknames is kept: each one asked for (WHOWAS a,b
        # [count [server]]) was no such nickname, then one 369 for them all.
        if not params or not params[0]:
            raise NoNickname()
        nicks = params[0]
        self._reply(
            *(
                self._numeric(ERR_WASNOSUCHNICK, nick, "There was no such nickname")
                for nick in nicks.split(",")
                if nick
            ),
            self._numeric(RPL_ENDOFWHOWAS, nicks, "End of WHOWAS"),
        )

    def _userhost(self, params: list[str]) -> Command:
        # One nickname: the core answers one user at a time.
        if not params or not params[0]:
            raise NeedMoreParams("USERHOST")
        return Whois(params[0])

    def _lusers(self, params: list[str]) -> Command:
        return ShowCounts()

    def _motd(self, params: list[str]) -> None:
        self._reply(self._numeric(ERR_NOMOTD, "MOTD File is missing"))

    def _away(self, params: list[str]) -> Command:
        message = _optional_text(params[0]) if params else None
        return SetAway(message[:AWAYLEN] if message is not None else None)

    def _mode(self, params: list[str]) -> Command | None:
        if not params or not params[0]:
            raise NeedMoreParams("MODE")
        target = params[0]
        if target.startswith("#"):
            return self._channel_mode(target, params[1:])
        if name_key(target) != name_key(self.nick or ""):
            raise UserModeNotSupported(other=True)
        if len(params) == 1 or set(params[1]) <= _QUIET_USER_MODES:
            # Asked, or a change of i or r (irssi asks +i at every connect):
            # the modes as they stand, no error.
            self._reply(self._numeric(RPL_UMODEIS, self._user_modes()))
            return None
        raise UserModeNotSupported(other=False)

    def _channel_mode(self, room: str, params: list[str]) -> Command | None:
        """One change (L{split_modes} made it one) or query of a channel's modes."""
        if not params:
            return ShowRoomModes(room)  # 324 and 329
        sign = "-" if params[0].startswith("-") else "+"
        letter = params[0].lstrip("+-")[:1]
        argument = params[1] if len(params) > 1 else None
        if letter == "b":
            if argument is None:
                return ListBans(room)
            return SetBan(room, ban_nick(room, argument), sign == "+")
        if letter == "o":
            if argument is None:
                raise NeedMoreParams("MODE")
            return SetOperator(room, argument, sign == "+")
        if letter == "v":
            if argument is None:
                raise NeedMoreParams("MODE")
            return SetVoice(room, argument, sign == "+")
        if letter in ROOM_MODE_LETTERS:
            return SetRoomMode(room, ROOM_MODE_LETTERS[letter], sign == "+")
        if not letter or (sign == "+" and letter == "n"):
            return None  # always set
        raise UnknownMode(letter)

    def _quit(self, params: list[str]) -> Command:
        self._quit_reason = params[0] if params else ""
        return Quit(_optional_text(self._quit_reason) if self._quit_reason else None)

    def _register_account(self, params: list[str]) -> Command:
        # draft/account-registration's REGISTER <account> <email> <password>;
        # the account is the nickname.
        if len(params) < 3:
            raise NeedMoreParams("REGISTER")
        return CreateAccount(params[2])

    # Events out.

    def encode(self, event: Event) -> bytes:
        """The event as IRC lines, each ending in CR LF (none for its own room message)."""
        if type(event) is not Left or not event.disconnected:
            self._last_quit = None
        encoder = _ENCODERS.get(type(event))
        if encoder is None:
            raise TypeError(f"not an event: {event!r}")
        lines: Sequence[str] = encoder(self, event)
        return "".join(f"{line}\r\n" for line in lines).encode()

    def _is_me(self, nick: str) -> bool:
        return self.nick is not None and name_key(nick) == name_key(self.nick)

    def _privmsg(
        self, sender: str, target: str, text: str, action: bool = False, notice: bool = False
    ) -> list[str]:
        """PRIVMSG (or NOTICE) lines of at most 512 bytes; an action is a CTCP ACTION in each."""
        head = f":{mask(sender)} {'NOTICE' if notice else 'PRIVMSG'} {target} :"
        tail = ""
        if action:
            head, tail = head + "\x01ACTION ", "\x01"
        room = IRC_LINE - 2 - len(head.encode()) - len(tail)
        return [head + piece + tail for piece in cut_utf8(text, room)]

    def _direct(self, event: DirectMessage) -> list[str]:
        return self._privmsg(event.sender, self.nick or "*", event.text, event.action, event.notice)

    def _room_message(self, event: RoomMessage) -> list[str]:
        if self._is_me(event.sender):
            return []  # IRC clients show their own messages themselves
        return self._privmsg(event.sender, event.room, event.text, event.action, event.notice)

    def _replayed(self, event: Replayed) -> list[str]:
        """
        A message from the past: with server-time, tagged C{@time=...}; without,
        its time before its text.
        """
        message = event.message
        target = message.room if isinstance(message, RoomMessage) else self.nick or "*"
        if "server-time" not in self._caps:
            text = f"[{format_time(event.sent_at)}] {message.text}"
            return self._privmsg(message.sender, target, text, message.action)
        tag = f"@time={server_time(event.sent_at)} "
        lines = self._privmsg(message.sender, target, message.text, message.action)
        return [tag + line for line in lines]

    def _room_topic(self, event: RoomTopic) -> list[str]:
        if event.topic is None:
            return [self._numeric(RPL_NOTOPIC, event.room, "No topic is set")]
        lines = [self._numeric(RPL_TOPIC, event.room, event.topic)]
        if event.set_by is not None and event.set_at is not None:
            lines.append(
                self._numeric(
                    RPL_TOPICWHOTIME, event.room, mask(event.set_by), str(int(event.set_at))
                )
            )
        return lines

    def _topic_changed(self, event: TopicChanged) -> list[str]:
        return [format_message(mask(event.nick), "TOPIC", event.room, event.topic or "")]

    def _operator_changed(self, event: OperatorChanged) -> list[str]:
        change = "+o" if event.operator else "-o"
        return [format_message(mask(event.by), "MODE", event.room, change, event.nick)]

    def _voice_changed(self, event: VoiceChanged) -> list[str]:
        change = "+v" if event.voiced else "-v"
        return [format_message(mask(event.by), "MODE", event.room, change, event.nick)]

    def _room_mode_changed(self, event: RoomModeChanged) -> list[str]:
        change = ("+" if event.on else "-") + _MODE_LETTER[event.mode]
        return [format_message(mask(event.by), "MODE", event.room, change)]

    def _room_modes(self, event: RoomModes) -> list[str]:
        letters = "".join(sorted(["n", *(_MODE_LETTER[mode] for mode in event.modes)]))
        return [
            self._numeric(RPL_CHANNELMODEIS, event.room, f"+{letters}"),
            self._numeric(RPL_CREATIONTIME, event.room, str(int(event.created_at))),
        ]

    def _prefixes(self, nick: str, operators: set[str], voiced: set[str]) -> str:
        """C{@} and C{+} as the member has them (L{_marks})."""
        return self._marks(nick in operators, nick in voiced)

    def _marks(self, operator: bool, voiced: bool) -> str:
        """C{@} for an operator, C{+} for a voice: both with multi-prefix, else the higher."""
        marks = ("@" if operator else "") + ("+" if voiced else "")
        return marks if "multi-prefix" in self._caps else marks[:1]

    def _kicked(self, event: Kicked) -> list[str]:
        if self._is_me(event.nick):
            self._rooms.pop(name_key(event.room), None)
        reason = event.reason or event.by  # RFC 2812's default: the kicker's nickname
        return [format_message(mask(event.by), "KICK", event.room, event.nick, reason)]

    def _ban_changed(self, event: BanChanged) -> list[str]:
        change = "+b" if event.banned else "-b"
        return [format_message(mask(event.by), "MODE", event.room, change, ban_mask(event.nick))]

    def _ban_list(self, event: BanList) -> list[str]:
        return [
            *(self._numeric(RPL_BANLIST, event.room, ban_mask(nick)) for nick in event.nicks),
            self._numeric(RPL_ENDOFBANLIST, event.room, "End of channel ban list"),
        ]

    def _notice(self, text: str, target: str | None = None) -> list[str]:
        head = f":{self.server} NOTICE {target or self.nick or '*'} :"
        return [head + piece for piece in cut_utf8(text, IRC_LINE - 2 - len(head.encode()))]

    def _closing(self, reason: str) -> list[str]:
        who = f"{self.nick or '*'}[{HOST}]"
        return [format_message(None, "ERROR", f"Closing link: {who} ({reason})")]

    def _server_notice(self, event: Notice) -> list[str]:
        if type(event) is Reply:
            return [event.text[:-2]] if event.text.endswith("\r\n") else [event.text]
        text = event.text
        if text.startswith("connected from "):
            return self._notice(f"*** Connected from {text[15:].split(' — ')[0]}")
        if text == "bye":
            return self._closing(f"Quit: {self._quit_reason}" if self._quit_reason else "Quit")
        if text.endswith("; closing"):
            return self._closing(text[: -len("; closing")])
        return self._notice(f"*** {text}")

    def _registered(self, event: Registered) -> list[str]:
        old, self.nick = self.nick, event.nick
        if not self._welcomed:
            return self._welcome()
        lines = [f":{mask(old or event.nick)} NICK :{event.nick}"]
        if self._account is not None and name_key(self._account) != name_key(event.nick):
            self._account = None  # another name leaves the account
            lines.append(self._user_mode_change("-r"))
        return lines

    def _logged_in(self, event: LoggedIn) -> list[str]:
        old, self.nick = self.nick, event.nick
        was_logged_in, self._account = self._account is not None, event.nick
        lines = [
            self._numeric(
                RPL_LOGGEDIN, mask(event.nick), event.nick, f"You are now logged in as {event.nick}"
            )
        ]
        if self._sasl_pending:
            self._sasl_pending = False
            lines.append(self._numeric(RPL_SASLSUCCESS, "SASL authentication successful"))
        if self._registering:
            lines.extend(self._welcome())
        elif self._welcomed:
            if old is not None and old != event.nick:
                lines.insert(0, f":{mask(old)} NICK :{event.nick}")
            if not was_logged_in:
                lines.append(self._user_mode_change("+r"))
        if event.waiting:
            lines.extend(self._notice(f"*** {_follow(event.waiting, 'waiting message')}"))
        return lines

    def _joined(self, event: Joined) -> list[str]:
        if self._is_me(event.nick):
            self._rooms[name_key(event.room)] = event.room
        return [f":{mask(event.nick)} JOIN {event.room}"]

    def _left(self, event: Left) -> list[str]:
        if self._is_me(event.nick):
            self._rooms.pop(name_key(event.room), None)
        if not event.disconnected:
            # RFC 2812: without a part message, the nickname is the default one.
            return [
                format_message(mask(event.nick), "PART", event.room, event.reason or event.nick)
            ]
        # One QUIT however many rooms are shared: the router tells each room in turn.
        if self._last_quit == event.nick:
            return []
        self._last_quit = event.nick
        reason = f"Quit: {event.reason}" if event.reason else "Quit"
        return [format_message(mask(event.nick), "QUIT", reason)]

    def _renamed(self, event: Renamed) -> list[str]:
        return [f":{mask(event.old)} NICK :{event.new}"]

    def _user_list(self, event: UserList) -> list[str]:
        command, room, nicks = self._command, event.room, event.nicks
        if command == "WHO":
            wanted = self._arguments[0] if self._arguments else "*"
            whox = parse_whox(self._arguments[1]) if len(self._arguments) > 1 else None
            channel = room or "*"
            operators, voiced = set(event.operators), set(event.voiced)
            return [
                *(
                    self._who_reply(
                        info, channel, self._prefixes(info.nick, operators, voiced), whox
                    )
                    for info in event.users
                    if room is not None or wanted in ("*", "0") or mask_matches(wanted, info.nick)
                ),
                self._numeric(RPL_ENDOFWHO, wanted, "End of WHO list"),
            ]
        return self._name_replies(room, nicks, event.operators, event.voiced, event.secret)

    def _who_reply(
        self, info: UserInfo, channel: str, prefixes: str, whox: tuple[str, str] | None
    ) -> str:
        """One user's 352, or with WHOX's C{%fields,token} (L{parse_whox}) its 354."""
        flags = ("H" if info.away is None else "G") + prefixes
        if whox is None:
            return self._numeric(
                RPL_WHOREPLY,
                channel,
                info.user,
                HOST,
                self.server,
                info.nick,
                flags,
                f"0 {info.real_name}",
            )
        fields, token = whox
        values = {
            "t": token,
            "c": channel,
            "u": info.user,
            "i": HIDDEN_IP,
            "h": HOST,
            "s": self.server,
            "n": info.nick,
            "f": flags,
            "d": "0",
            "l": "0",
            "a": info.account or "0",
            "o": "n/a",
            "r": info.real_name,
        }
        return self._numeric(RPL_WHOSPCRPL, *(values[letter] for letter in fields))

    def _name_replies(
        self,
        room: str | None,
        nicks: Sequence[str],
        operators: Sequence[str],
        voiced: Sequence[str],
        secret: bool,
    ) -> list[str]:
        """353s (C{@} for a secret channel, RFC 2812's symbol; else C{=}), then 366."""
        channel = room or "*"
        head = self._numeric(RPL_NAMREPLY, "@" if secret else "=", channel, "x")[:-1] + ":"
        lines: list[str] = []
        current: list[str] = []
        marked, spoken = set(operators), set(voiced)
        shown = mask if "userhost-in-names" in self._caps else str
        for name in nicks:
            nick = self._prefixes(name, marked, spoken) + shown(name)
            if current and len((head + " ".join([*current, nick])).encode()) > IRC_LINE - 2:
                lines.append(head + " ".join(current))
                current = []
            current.append(nick)
        if current:
            lines.append(head + " ".join(current))
        lines.extend(self._end_of_names(channel))
        return lines

    def _user_info(self, event: UserInfo) -> list[str]:
        if self._command == "USERHOST":
            sign = "+" if event.away is None else "-"
            return [self._numeric(RPL_USERHOST, f"{event.nick}={sign}{event.user}@{HOST}")]
        extra = [] if event.away is None else [self._numeric(RPL_AWAY, event.nick, event.away)]
        if event.account is not None:
            extra.append(
                self._numeric(RPL_WHOISACCOUNT, event.nick, event.account, "is logged in as")
            )
        return [
            self._numeric(RPL_WHOISUSER, event.nick, event.user, HOST, "*", event.real_name),
            *self._whois_channels(event),
            self._numeric(RPL_WHOISSERVER, event.nick, self.server, "chatroute"),
            *extra,
            self._numeric(RPL_ENDOFWHOIS, event.nick, "End of /WHOIS list"),
        ]

    def _whois_channels(self, event: UserInfo) -> list[str]:
        """
        319s: the rooms the router says the asker may see (secret ones only
        if it shares them), C{@} and C{+} as in NAMES; none if there are none.
        """
        names = [
            self._marks(member.operator, member.voiced) + member.room for member in event.rooms
        ]
        head = self._numeric(RPL_WHOISCHANNELS, event.nick, "x")[:-1] + ":"
        lines: list[str] = []
        for name in names:
            if lines and len((lines[-1] + " " + name).encode()) <= IRC_LINE - 2:
                lines[-1] += " " + name
            else:
                lines.append(head + name)
        return lines

    def _is_away(self, event: IsAway) -> list[str]:
        return [self._numeric(RPL_AWAY, event.nick, event.message)]

    def _away_changed(self, event: AwayChanged) -> list[str]:
        if event.message is None:
            return [self._numeric(RPL_UNAWAY, "You are no longer marked as being away")]
        return [self._numeric(RPL_NOWAWAY, "You have been marked as being away")]

    def _end_of_names(self, channel: str) -> list[str]:
        """366 for C{channel}; in a joint reply (L{expand}), once, for all the channels."""
        if self._command == "NAMES":
            if _NAMES_MORE.decode() in self._tags:
                return []
            channel = self._tags.get(_NAMES_END.decode(), channel)
        return [self._numeric(RPL_ENDOFNAMES, channel, "End of /NAMES list")]

    def _counts(self, event: Counts) -> list[str]:
        users, peak = str(event.users), str(event.peak_users)
        return [
            self._numeric(RPL_LUSERCLIENT, f"There are {users} users and 0 invisible on 1 servers"),
            self._numeric(RPL_LUSERUNKNOWN, str(event.unregistered), "unknown connection(s)"),
            self._numeric(RPL_LUSERCHANNELS, str(event.rooms), "channels formed"),
            self._numeric(RPL_LUSERME, f"I have {users} clients and 0 servers"),
            self._numeric(RPL_LOCALUSERS, users, peak, f"Current local users {users}, max {peak}"),
            self._numeric(
                RPL_GLOBALUSERS, users, peak, f"Current global users {users}, max {peak}"
            ),
        ]

    def _room_list(self, event: RoomList) -> list[str]:
        return [
            self._numeric(RPL_LISTSTART, "Channel", "Users  Name"),
            *(self._numeric(RPL_LIST, name, str(count), "") for name, count in event.rooms),
            self._numeric(RPL_LISTEND, "End of /LIST"),
        ]

    def _account_created(self, event: AccountCreated) -> list[str]:
        self._account = event.nick
        return [
            format_message(self.server, "REGISTER", "SUCCESS", event.nick, "Account created"),
            self._numeric(
                RPL_LOGGEDIN, mask(event.nick), event.nick, f"You are now logged in as {event.nick}"
            ),
            self._user_mode_change("+r"),
        ]

    def _history_start(self, event: HistoryStart) -> list[str]:
        return self._notice(
            f"*** history of {event.room}: {_follow(event.count, 'message')}", event.room
        )

    def _stored_for_later(self, event: StoredForLater) -> list[str]:
        # A server NOTICE addressed to the recipient, as history's is to its
        # room: clients (irssi) show it in the query with them, where the
        # message was written, and it is still the server's, not theirs.
        text = f"*** {event.recipient} is offline; message stored for delivery at login"
        return self._notice(text, event.recipient)

    def _text_notice(self, text: str) -> list[str]:
        return self._notice(f"*** {text}")

    def encode_error(self, error: ChatError) -> bytes:
        """
        The error as IRC numerics (or FAIL, ERROR) for the command being
        carried out; nothing for a NOTICE (never answered automatically),
        except that its line is too long or not UTF-8. A flood refusal is of
        a line never parsed: whether that line is a NOTICE is its own command
        (the first word of its quote, L{quote}), not the last line parsed.
        """
        if isinstance(error, Flooding):
            if error.line_start.partition(" ")[0].upper() == "NOTICE":
                return b""
            lines = self._notice(f"*** {format_error(error)}")
        else:
            if not self._welcomed:
                self._registering = False
            if self._command == "NOTICE" and not isinstance(error, LineTooLong | InvalidEncoding):
                return b""
            lines = self._error_lines(error)
        return "".join(f"{line}\r\n" for line in lines).encode()

    def _error_lines(self, error: ChatError) -> list[str]:
        command = self._command
        if isinstance(
            error,
            SaslFailed | LoginFailed | LoginThrottled | PasswordNeedsTLS | ServerPasswordRequired,
        ) and (command == "AUTHENTICATE"):
            self._sasl_pending = False
            reason = "SASL authentication failed"
            if isinstance(error, ServerPasswordRequired):
                reason += ": send PASS first"
            elif not isinstance(error, SaslFailed | LoginFailed):
                reason += f": {format_error(error)}"
            return [self._numeric(ERR_SASLFAIL, reason)]
        if isinstance(error, ServerPasswordRequired):
            return [self._numeric(ERR_PASSWDMISMATCH, "Password required: send PASS first")]
        if isinstance(error, WrongServerPassword):
            return [
                self._numeric(ERR_PASSWDMISMATCH, "Password incorrect"),
                *self._closing("Bad password"),
            ]
        if isinstance(error, LoginFailed | LoginThrottled | PasswordNeedsTLS):
            return [self._numeric(ERR_PASSWDMISMATCH, f"Password incorrect: {format_error(error)}")]
        if isinstance(error, InvalidEncoding):
            return [
                format_message(
                    self.server, "FAIL", command or "*", "INVALID_UTF8", format_error(error)
                )
            ]
        if isinstance(error, ServerFull | TooManyConnections):
            return self._closing(format_error(error).removesuffix("; closing"))
        if isinstance(error, NicknameTaken | NameRegistered):
            wanted = self._arguments[0] if command == "NICK" and self._arguments else error.nick
            reason = "Nickname is already in use"
            if isinstance(error, NameRegistered):
                reason = "Nickname is a registered account; log in with SASL or PASS"
            return [self._numeric(ERR_NICKNAMEINUSE, wanted, reason)]
        if isinstance(error, NotInRoom):
            if command in ("PRIVMSG", "NOTICE"):
                return [self._numeric(ERR_CANNOTSENDTOCHAN, error.room, "Cannot send to channel")]
            return [self._numeric(ERR_NOTONCHANNEL, error.room, "You're not on that channel")]
        if isinstance(error, InvalidRoomName):
            if command == "NAMES":
                return self._end_of_names(error.room)
            if command == "JOIN":
                return [self._numeric(ERR_BADCHANNAME, error.room, "Illegal channel name")]
            if command in ("PRIVMSG", "NOTICE"):
                return [self._numeric(ERR_NOSUCHNICK, error.room, "No such nick/channel")]
            return [self._numeric(ERR_NOSUCHCHANNEL, error.room, "No such channel")]
        if isinstance(error, NoSuchRoom):
            if command == "NAMES":
                return self._end_of_names(error.room)
            if command == "WHO":
                return [self._numeric(RPL_ENDOFWHO, error.room, "End of WHO list")]
            return [self._numeric(ERR_NOSUCHCHANNEL, error.room, "No such channel")]
        if isinstance(error, NoSuchUser) and command == "WHOIS":
            return [
                self._numeric(ERR_NOSUCHNICK, error.nick, "No such nick/channel"),
                self._numeric(RPL_ENDOFWHOIS, error.nick, "End of /WHOIS list"),
            ]
        if isinstance(error, NoSuchUser) and command == "USERHOST":
            return [self._numeric(RPL_USERHOST, "")]
        if isinstance(error, AlreadyInRoom):
            return []  # IRC servers ignore a JOIN of a channel one is in
        if isinstance(error, AccountExists | BadPassword) and command == "REGISTER":
            code = "ALREADY_AUTHENTICATED" if isinstance(error, AccountExists) else "WEAK_PASSWORD"
            return [format_message(self.server, "FAIL", "REGISTER", code, "*", format_error(error))]
        if isinstance(error, UserModeNotSupported):
            if error.other:
                return [self._numeric(ERR_USERSDONTMATCH, "Can't change mode for other users")]
            return [self._numeric(ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")]
        if isinstance(error, MailboxFull):  # as StoredForLater: in the query with them
            return self._notice(f"*** {format_error(error)}", error.nick)
        if isinstance(error, Moderated):
            return [self._numeric(ERR_CANNOTSENDTOCHAN, error.room, "Cannot send to channel (+m)")]
        if isinstance(
            error,
            AlreadyOperator
            | NotOperator
            | AlreadyBanned
            | NotBanned
            | AlreadyVoiced
            | NotVoiced
            | ModeUnchanged,
        ):
            return []  # IRC servers say nothing about a change that changes nothing
        if isinstance(error, InvalidNickname) and command == "MODE":  # a ban of no nickname
            return self._error_lines(BanMaskNotSupported(self._arguments[0], self._arguments[-1]))
        simple = _SIMPLE_ERRORS.get(type(error))
        if simple is not None:
            return [self._numeric(*simple(error))]
        return self._notice(f"*** {format_error(error)}")

    def help_lines(self) -> Sequence[str]:
        """The IRC commands understood (IRC clients have their own help)."""
        return ("IRC: " + " ".join(sorted(_COMMANDS)),)

    def quote(self, line: bytes) -> str:
        """
        The start of a line, for the flood limit's error: from its command
        on (tags and a prefix left out), the command and the rest one space
        apart, so the command is the quote's first word (L{encode_error}
        looks at it); a password masked, control characters replaced, at
        most 40 characters.
        """
        words = _without_tags_or_prefix(line)[:160].decode(errors="replace").split(None, 1)
        if len(words) == 2 and words[0].upper() in ("PASS", "AUTHENTICATE"):
            words[1] = "********"
        text = CONTROL_CHARACTERS.sub("\N{REPLACEMENT CHARACTER}", " ".join(words))
        return text if len(text) <= 40 else text[:39] + "…"


_MODE_LETTER = {mode: letter for letter, mode in ROOM_MODE_LETTERS.items()}

# Tags that L{IRCFormat.expand} puts on the lines of a NAMES of several
# channels: all but the last have no 366; the last's names them all.
_NAMES_MORE = b"chatroute/names-more"
_NAMES_END = b"chatroute/names-end"


def _follow(number: int, noun: str) -> str:
    """C{1 message follows}, C{2 messages follow}: the count of what comes next, in its number."""
    return f"1 {noun} follows" if number == 1 else f"{number} {noun}s follow"


def _without_tags_or_prefix(line: bytes) -> bytes:
    """C{line} from its command on: IRCv3 tags and a prefix left out, as L{parse_message} does."""
    rest = line.lstrip(b" ")
    if rest.startswith(b"@"):
        rest = rest.partition(b" ")[2].lstrip(b" ")
    if rest.startswith(b":"):
        rest = rest.partition(b" ")[2].lstrip(b" ")
    return rest


def _tagged(head: bytes, tag: bytes) -> bytes:
    """C{head} (tags, a prefix, or nothing, ending in a space if not empty) with C{tag} added."""
    if head.startswith(b"@"):
        return b"@" + tag + b";" + head[1:]
    return b"@" + tag + b" " + head


def _optional_text(text: str) -> str | None:
    """A topic's or reason's text (L{plain_text}); None if nothing is left."""
    try:
        return plain_text(text)
    except EmptyMessage:
        return None


_COMMANDS: dict[str, Callable[[IRCFormat, list[str]], Command | None]] = {
    "AUTHENTICATE": IRCFormat._authenticate,
    "AWAY": IRCFormat._away,
    "CAP": IRCFormat._cap_command,
    "JOIN": IRCFormat._join,
    "KICK": IRCFormat._kick,
    "LIST": IRCFormat._list,
    "LUSERS": IRCFormat._lusers,
    "MODE": IRCFormat._mode,
    "MOTD": IRCFormat._motd,
    "NAMES": IRCFormat._names,
    "NICK": IRCFormat._nick_command,
    "NOTICE": IRCFormat._message,
    "PART": IRCFormat._part,
    "PASS": IRCFormat._pass,
    "PING": IRCFormat._ping,
    "PONG": IRCFormat._ignore,
    "PRIVMSG": IRCFormat._message,
    "QUIT": IRCFormat._quit,
    "REGISTER": IRCFormat._register_account,
    "TOPIC": IRCFormat._topic,
    "USER": IRCFormat._user_command,
    "USERHOST": IRCFormat._userhost,
    "WHO": IRCFormat._who,
    "WHOIS": IRCFormat._whois,
    "WHOWAS": IRCFormat._whowas,
}
"""What each IRC command does: a core command to carry out, or None when answered here."""

_BEFORE_WELCOME = frozenset({"AUTHENTICATE", "CAP", "NICK", "PASS", "PING", "PONG", "QUIT", "USER"})
"""The commands that work before registration is complete; any other gets 451."""

_ENCODERS: dict[type, Callable[[IRCFormat, Any], Sequence[str]]] = {
    DirectMessage: IRCFormat._direct,
    RoomMessage: IRCFormat._room_message,
    Replayed: IRCFormat._replayed,
    LoggedIn: IRCFormat._logged_in,
    AccountCreated: IRCFormat._account_created,
    PasswordChanged: lambda self, e: self._text_notice("password changed"),
    PasswordAccepted: lambda self, e: [],  # IRC servers say nothing to a right PASS
    StoredForLater: IRCFormat._stored_for_later,
    HistoryStart: IRCFormat._history_start,
    Joined: IRCFormat._joined,
    Left: IRCFormat._left,
    Renamed: IRCFormat._renamed,
    Registered: IRCFormat._registered,
    UserList: IRCFormat._user_list,
    UserInfo: IRCFormat._user_info,
    IsAway: IRCFormat._is_away,
    AwayChanged: IRCFormat._away_changed,
    RoomList: IRCFormat._room_list,
    Counts: IRCFormat._counts,
    RoomTopic: IRCFormat._room_topic,
    TopicChanged: IRCFormat._topic_changed,
    OperatorChanged: IRCFormat._operator_changed,
    VoiceChanged: IRCFormat._voice_changed,
    RoomModeChanged: IRCFormat._room_mode_changed,
    RoomModes: IRCFormat._room_modes,
    Kicked: IRCFormat._kicked,
    BanChanged: IRCFormat._ban_changed,
    BanList: IRCFormat._ban_list,
    LimitsInfo: lambda self, e: self._text_notice(
        f"limits: flood-rate={e.flood_rate:g} flood-burst={e.flood_burst} "
        f"max-line-length={e.max_line_length} idle-timeout={e.idle_timeout:g}"
    ),
    Notice: IRCFormat._server_notice,
    Reply: IRCFormat._server_notice,
}
"""How each kind of event is worded on IRC, looked up by type."""

_SIMPLE_ERRORS: dict[type, Callable[[Any], tuple[str, ...]]] = {
    NotRegistered: lambda e: (ERR_NOTREGISTERED, "You have not registered"),
    NeedMoreParams: lambda e: (ERR_NEEDMOREPARAMS, e.command, "Not enough parameters"),
    AlreadyRegistered: lambda e: (ERR_ALREADYREGISTRED, "You may not reregister"),
    UnknownCommand: lambda e: (ERR_UNKNOWNCOMMAND, e.command, "Unknown command"),
    NoOrigin: lambda e: (ERR_NOORIGIN, "No origin specified"),
    NoRecipient: lambda e: (ERR_NORECIPIENT, f"No recipient given ({e.command})"),
    NoNickname: lambda e: (ERR_NONICKNAMEGIVEN, "No nickname given"),
    EmptyMessage: lambda e: (ERR_NOTEXTTOSEND, "No text to send"),
    InvalidNickname: lambda e: (ERR_ERRONEUSNICKNAME, e.nick, "Erroneous nickname"),
    NoSuchUser: lambda e: (ERR_NOSUCHNICK, e.nick, "No such nick/channel"),
    InvalidCapCommand: lambda e: (ERR_INVALIDCAPCMD, e.subcommand, "Invalid CAP command"),
    SaslFailed: lambda e: (ERR_SASLFAIL, "SASL authentication failed"),
    SaslTooLong: lambda e: (ERR_SASLTOOLONG, "SASL message too long"),
    SaslAborted: lambda e: (ERR_SASLABORTED, "SASL authentication aborted"),
    SaslAlready: lambda e: (ERR_SASLALREADY, "You have already authenticated using SASL"),
    LineTooLong: lambda e: (ERR_INPUTTOOLONG, "Input line was too long"),
    OperatorRequired: lambda e: (ERR_CHANOPRIVSNEEDED, e.room, "You're not channel operator"),
    NoSuchMember: lambda e: (ERR_USERNOTINCHANNEL, e.nick, e.room, "They aren't on that channel"),
    BannedFromRoom: lambda e: (ERR_BANNEDFROMCHAN, e.room, "Cannot join channel (+b)"),
    UnknownMode: lambda e: (ERR_UNKNOWNMODE, e.letter, "is unknown mode char to me"),
    BanMaskNotSupported: lambda e: (
        ERR_INVALIDMODEPARAM,
        e.room,
        "b",
        e.mask,
        "Bans are of nicknames: nick or nick!*@*",
    ),
    AccountRequired: lambda e: (
        ERR_NEEDREGGEDNICK,
        "*",
        "You need to log in to an account (SASL) to chat on this server",
    ),
}
"""Errors that are one numeric whatever the command: its code and parameters."""


class IRCProtocol(ChatProtocol):
    """
    One IRC client connection: the line protocol's framing (LF or CR LF,
    over-long lines refused and skipped; no telnet), with lines that name
    several targets split into one line each, and a format of its own.
    """

    frontend = "irc"
    telnet = False
    expands = True

    __slots__ = ()

    _wire: IRCFormat

    def connectionMade(self) -> None:
        """Start the session; the format answers through it."""
        super().connectionMade()
        if self._session is not None:
            self._wire.attach(self._session.deliver)

    def expand(self, lines: list[bytes]) -> list[bytes]:
        """Each line as the lines to carry out (L{IRCFormat.expand})."""
        expand = self._wire.expand
        result: list[bytes] = []
        for line in lines:
            upper = line.upper()
            wanted = b"," in line or b"JOIN 0" in upper or b"MODE #" in upper
            result.extend(expand(line) if wanted else (line,))
        return result


class IRCServerFactory(ServerFactory):
    """Builds an L{IRCProtocol}, with its own L{IRCFormat}, per connection; one L{Hub} for all."""

    noisy = False

    def __init__(self, hub: Hub, server: str = SERVER) -> None:
        """
        @param server: the server's name, for prefixes and numerics.
        """
        self.hub = hub
        self.server = server

    def buildProtocol(self, addr: IAddress | None) -> IRCProtocol:
        """A new connection's protocol."""
        settings = self.hub.router.settings
        wire = IRCFormat(
            self.server,
            settings.max_topic_length,
            settings.max_reason_length,
            self.hub.server_password is not None,
        )
        protocol = IRCProtocol(self.hub, wire)
        protocol.factory = self
        return protocol
