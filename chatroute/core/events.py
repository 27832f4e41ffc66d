"""
What the router tells participants: plain, immutable values.

Front ends (the line protocol now, others later) turn these into their own
wire format; the router never sees any wire syntax.

Events are values: nothing changes one after it is made. They are not
C{frozen} dataclasses only because those take three times as long to create
(the C{__init__} goes through C{object.__setattr__}), and one or two are made
for every message.
"""

from dataclasses import dataclass


@dataclass(slots=True)
class DirectMessage:
    """
    A message from C{sender} to the participant alone; with C{action}, what
    the sender does (C{/me}) rather than says; with C{notice}, a notice
    (front ends without notices show it as a message).
    """

    sender: str
    text: str
    action: bool = False
    notice: bool = False


@dataclass(slots=True)
class RoomMessage:
    """
    A message from C{sender} in C{room}; every member gets it, the sender
    too. With C{action}, what the sender does (C{/me}) rather than says;
    with C{notice}, a notice.
    """

    room: str
    sender: str
    text: str
    action: bool = False
    notice: bool = False


@dataclass(slots=True)
class Joined:
    """C{nick} joined C{room}."""

    room: str
    nick: str


@dataclass(slots=True)
class Left:
    """
    C{nick} left C{room}; C{disconnected} if the connection closed. C{reason}
    is the reason the user gave for leaving (for a disconnect, for quitting);
    None if none.
    """

    room: str
    nick: str
    disconnected: bool = False
    reason: str | None = None


@dataclass(slots=True)
class Renamed:
    """A user who shares a room with the participant changed nickname."""

    old: str
    new: str


@dataclass(slots=True)
class Registered:
    """The participant now goes by C{nick}."""

    nick: str


@dataclass(slots=True)
class Membership:
    """One room a user is in, as a whois tells it: whether they are its operator, have a voice."""

    room: str
    operator: bool = False
    voiced: bool = False


@dataclass(slots=True)
class UserInfo:
    """
    What is known of the online user C{nick}: the user name and real name
    its client gave (the nickname if it gave none), its away message
    (None: not away), the account it is logged in to (None: a guest), and
    for a whois, the rooms it is in that the asker may see, in the order it
    joined them (empty in a user list).
    """

    nick: str
    user: str
    real_name: str
    away: str | None = None
    account: str | None = None
    rooms: tuple[Membership, ...] = ()


@dataclass(slots=True)
class UserList:
    """
    The online users (C{room} is None) or the members of C{room}; of those,
    C{operators} are the room's operators and C{voiced} those with a voice
    (as in C{nicks}, in the same order); C{secret}: the room is secret.
    C{users} is empty, or when asked for, each user's L{UserInfo}, in the
    order of C{nicks}.
    """

    room: str | None
    nicks: tuple[str, ...]
    operators: tuple[str, ...] = ()
    users: tuple[UserInfo, ...] = ()
    voiced: tuple[str, ...] = ()
    secret: bool = False


@dataclass(slots=True)
class IsAway:
    """The participant's direct message reached C{nick}, who is away: C{message}."""

    nick: str
    message: str


@dataclass(slots=True)
class AwayChanged:
    """The participant is now marked away with C{message}, or (None) no longer."""

    message: str | None


@dataclass(slots=True)
class RoomTopic:
    """
    The topic of C{room}, None if it has none: answering a request, or on
    joining. C{set_by} is who set it and C{set_at} when (POSIX seconds);
    None with no topic.
    """

    room: str
    topic: str | None
    set_by: str | None = None
    set_at: float | None = None


@dataclass(slots=True)
class TopicChanged:
    """C{nick} set the topic of C{room} to C{topic}, or cleared it (None)."""

    room: str
    nick: str
    topic: str | None


@dataclass(slots=True)
class OperatorChanged:
    """C{by} made C{nick} an operator of C{room} (C{operator}), or took that away."""

    room: str
    nick: str
    by: str
    operator: bool


@dataclass(slots=True)
class VoiceChanged:
    """C{by} gave C{nick} a voice in C{room} (C{voiced}), or took it away."""

    room: str
    nick: str
    by: str
    voiced: bool


@dataclass(slots=True)
class RoomModeChanged:
    """C{by} turned the mode C{mode} of C{room} on (C{on}) or off."""

    room: str
    by: str
    mode: str
    on: bool


@dataclass(slots=True)
class RoomModes:
    """
    The modes set in C{room} (of L{chatroute.core.directory.ROOM_MODES}, in
    that order) and when it was created (POSIX seconds).
    """

    room: str
    modes: tuple[str, ...]
    created_at: float


@dataclass(slots=True)
class Kicked:
    """
    C{by} put C{nick} out of C{room}, for C{reason} (None: none given).
    Every member gets it, C{nick} too, who is then no longer a member.
    """

    room: str
    nick: str
    by: str
    reason: str | None = None


@dataclass(slots=True)
class BanChanged:
    """C{by} banned the nickname C{nick} from C{room} (C{banned}), or lifted the ban."""

    room: str
    nick: str
    by: str
    banned: bool


@dataclass(slots=True)
class BanList:
    """The nicknames banned from C{room}, as the operators gave them, by name."""

    room: str
    nicks: tuple[str, ...]


@dataclass(slots=True)
class RoomList:
    """Every room, as C{(name, member count)} pairs."""

    rooms: tuple[tuple[str, int], ...]


@dataclass(slots=True)
class Counts:
    """
    How many C{users} are online (with a nickname), C{unregistered}
    connections have none yet, C{rooms} exist, and the most users online at
    once since the server started (C{peak_users}).
    """

    users: int
    unregistered: int
    rooms: int
    peak_users: int


@dataclass(slots=True)
class LoggedIn:
    """The participant is logged in to the account C{nick}; C{waiting} messages follow."""

    nick: str
    waiting: int


@dataclass(slots=True)
class PasswordAccepted:
    """
    The connection gave the server's connect password (C{needed}), or the
    server has none (not C{needed}).
    """

    needed: bool


@dataclass(slots=True)
class AccountCreated:
    """The participant's nickname C{nick} is now an account."""

    nick: str


@dataclass(slots=True)
class PasswordChanged:
    """The participant's account has a new password."""


@dataclass(slots=True)
class StoredForLater:
    """The participant's message to offline C{recipient} is on disk, to be delivered at login."""

    recipient: str


@dataclass(slots=True)
class HistoryStart:
    """The last C{count} messages of C{room} follow, oldest first, as L{Replayed}."""

    room: str
    count: int


@dataclass(slots=True)
class Replayed:
    """A message from the past, sent at C{sent_at} (POSIX seconds): stored or room history."""

    sent_at: float
    message: DirectMessage | RoomMessage


@dataclass(slots=True)
class LimitsInfo:
    """The limits the connection is held to (0: none), so a client can pace itself."""

    flood_rate: float
    flood_burst: int
    max_line_length: int
    idle_timeout: float


@dataclass(slots=True)
class Notice:
    """Free text from the server: greetings, help, goodbyes."""

    text: str


Event = (
    DirectMessage
    | LoggedIn
    | AccountCreated
    | PasswordChanged
    | StoredForLater
    | HistoryStart
    | Replayed
    | RoomMessage
    | Joined
    | Left
    | Renamed
    | Registered
    | UserList
    | UserInfo
    | IsAway
    | AwayChanged
    | RoomList
    | Counts
    | RoomTopic
    | TopicChanged
    | OperatorChanged
    | VoiceChanged
    | RoomModeChanged
    | RoomModes
    | Kicked
    | BanChanged
    | BanList
    | LimitsInfo
    | PasswordAccepted
    | Notice
)
