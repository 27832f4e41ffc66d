"""
What a client asks of the server, whatever its front end: plain values that
front ends parse their lines or frames into and sessions carry out.

Like events, commands are values that nothing changes, and not frozen
dataclasses for speed.
"""

from dataclasses import dataclass


@dataclass(slots=True)
class Register:
    """
    C{#alice}: claim a nickname as a guest, or change to it;
    C{#alice secret} or C{/login alice secret}: log in to the account (the
    password is the rest of the line, spaces and all). C{user} and
    C{real_name} are the client's own information (IRC's C{USER}), if it
    gives any.
    """

    nick: str
    password: str | None = None
    user: str | None = None
    real_name: str | None = None


@dataclass(slots=True)
class ServerPassword:
    """
    C{/pass secret}: the server's connect password (the rest of the line),
    which a server run with one wants before anything else (IRC's C{PASS}).
    """

    password: str


@dataclass(slots=True)
class CreateAccount:
    """C{/register secret}: make the current nickname an account (the rest of the line)."""

    password: str


@dataclass(slots=True)
class ChangePassword:
    """C{/password old new} or C{/password "old words" "new words"}."""

    old: str
    new: str


@dataclass(slots=True)
class History:
    """C{/history #lobby [N]}: the room's last N messages (None: the server's default)."""

    room: str
    count: int | None


@dataclass(slots=True)
class SendDirect:
    """
    C{@bob:hello}: a message to one user; with C{action}, C{/me bob waves};
    with C{notice}, a notice (IRC's NOTICE), which nothing answers on its own.
    """

    to: str
    text: str
    action: bool = False
    notice: bool = False


@dataclass(slots=True)
class SendRoom:
    """C{@#lobby:hello}: a message to a room; with C{action}, C{/me #lobby waves}; or a notice."""

    room: str
    text: str
    action: bool = False
    notice: bool = False


@dataclass(slots=True)
class Join:
    """C{/join #lobby}."""

    room: str


@dataclass(slots=True)
class Leave:
    """C{/leave #lobby [reason]}: the reason, if any, is told to the members (None: none)."""

    room: str
    reason: str | None = None


@dataclass(slots=True)
class ShowTopic:
    """C{/topic #lobby}: the room's topic."""

    room: str


@dataclass(slots=True)
class SetTopic:
    """C{/topic #lobby text} sets the room's topic; C{/topic #lobby -} clears it (None)."""

    room: str
    topic: str | None


@dataclass(slots=True)
class SetOperator:
    """C{/op #lobby bob} (C{operator}) or C{/deop #lobby bob}."""

    room: str
    nick: str
    operator: bool


@dataclass(slots=True)
class SetVoice:
    """C{/voice #lobby bob} (C{voiced}) or C{/devoice #lobby bob}: who sends in a moderated room."""

    room: str
    nick: str
    voiced: bool


@dataclass(slots=True)
class SetRoomMode:
    """
    C{/mode #lobby +s}: turn one of the room's modes on (C{on}) or off; the
    mode is one of L{chatroute.core.directory.ROOM_MODES}.
    """

    room: str
    mode: str
    on: bool


@dataclass(slots=True)
class ShowRoomModes:
    """C{/mode #lobby}: the room's modes and when it was created."""

    room: str


@dataclass(slots=True)
class Kick:
    """C{/kick #lobby bob [reason]}: put a member out of the room."""

    room: str
    nick: str
    reason: str | None = None


@dataclass(slots=True)
class SetBan:
    """C{/ban #lobby bob} (C{banned}) or C{/unban #lobby bob}."""

    room: str
    nick: str
    banned: bool


@dataclass(slots=True)
class ListBans:
    """C{/bans #lobby}: the nicknames banned from the room."""

    room: str


@dataclass(slots=True)
class ListRooms:
    """C{/rooms}."""


@dataclass(slots=True)
class Who:
    """
    C{/who} (C{room} is None) or C{/who #lobby}; with C{details}, the
    answer tells each user's L{chatroute.core.events.UserInfo} too.
    """

    room: str | None
    details: bool = False


@dataclass(slots=True)
class Whois:
    """C{/whois bob}: what is known of one online user."""

    nick: str


@dataclass(slots=True)
class SetAway:
    """C{/away message}: mark yourself away with a message; C{/away} (None): back."""

    message: str | None


@dataclass(slots=True)
class ShowCounts:
    """How many users, connections still registering and rooms there are (IRC's C{LUSERS})."""


@dataclass(slots=True)
class Help:
    """C{/help}."""


@dataclass(slots=True)
class Ping:
    """C{/ping}: answered with C{* pong}, to keep a quiet connection alive."""


@dataclass(slots=True)
class ShowLimits:
    """C{/limits}: the flood, line-length and idle limits the connection is held to."""


@dataclass(slots=True)
class Quit:
    """C{/quit [reason]}: the reason, if any, is told to the rooms the user was in."""

    reason: str | None = None


Command = (
    Register
    | SendDirect
    | SendRoom
    | Join
    | Leave
    | ListRooms
    | Who
    | Help
    | Quit
    | Ping
    | ShowLimits
    | CreateAccount
    | ChangePassword
    | History
    | ShowTopic
    | SetTopic
    | SetOperator
    | Kick
    | SetBan
    | ListBans
    | Whois
    | SetAway
    | ShowCounts
    | ServerPassword
    | SetVoice
    | SetRoomMode
    | ShowRoomModes
)
