"""
Who holds which nickname, and which rooms exist: the router's one way to
users and rooms.

L{LocalDirectory} keeps them in this process's dicts. The router reaches
them only through L{chatroute.core.interfaces.IDirectory}, so that a
directory shared between processes can take its place.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from zope.interface import implementer

from chatroute.core.interfaces import IDirectory, IParticipant
from chatroute.storage import name_key


@dataclass(eq=False, slots=True)
class Presence:
    """
    One participant's standing with the router: who they are and where.

    @ivar peer: where the participant connects from, for the log.
    @ivar nick: the nickname as its owner typed it; None until registered
        and again once disconnected.
    @ivar account: whether C{nick} is an account the participant logged in to.
    @ivar rooms: the rooms the participant is in, by key.
    @ivar user: the user name its client gave (IRC's C{USER}); None: the nickname.
    @ivar real_name: the real name its client gave; None: the nickname.
    @ivar away: the away message, while the participant is away; else None.
    """

    participant: IParticipant
    peer: str = "?"
    nick: str | None = None
    account: bool = False
    rooms: dict[str, "Room"] = field(default_factory=dict)
    user: str | None = None
    real_name: str | None = None
    away: str | None = None


MODERATED = "moderated"
SECRET = "secret"
TOPIC_LOCK = "topic-lock"
ROOM_MODES = (MODERATED, SECRET, TOPIC_LOCK)
"""
A room's modes: C{moderated} (only operators and voiced members send),
C{secret} (not listed, and its members, topic and bans hidden from
non-members), C{topic-lock} (only operators set the topic; on by default).
"""


@dataclass(eq=False, slots=True)
class Room:
    """
    A named group of presences, and what lives as long as the room does.

    @ivar members: keyed by nickname key, in join order.
    @ivar operators: the keys of the members who are operators.
    @ivar topic: the room's topic; None if it has none.
    @ivar topic_by: who set the topic (None with no topic).
    @ivar topic_at: when the topic was set, in POSIX seconds (None with no topic).
    @ivar bans: the banned nicknames as the operators gave them, by key.
    @ivar voiced: the keys of the members with a voice (C{moderated}).
    @ivar modes: the room's modes that are on (of L{ROOM_MODES}).
    @ivar created_at: when the room was created, in POSIX seconds.
    """

    name: str
    members: dict[str, Presence] = field(default_factory=dict)
    operators: set[str] = field(default_factory=set)
    topic: str | None = None
    bans: dict[str, str] = field(default_factory=dict)
    topic_by: str | None = None
    topic_at: float | None = None
    voiced: set[str] = field(default_factory=set)
    modes: set[str] = field(default_factory=lambda: {TOPIC_LOCK})
    created_at: float = 0.0


@implementer(IDirectory)
class LocalDirectory:
    """Nicknames and rooms in this process, keyed by their L{name_key}."""

    __slots__ = ("_rooms", "_users", "holders")

    def __init__(self) -> None:
        self._users: dict[str, Presence] = {}
        self.holders: Mapping[str, Presence] = self._users
        self._rooms: dict[str, Room] = {}

    def holder(self, nick: str) -> Presence | None:
        """Who holds C{nick}, in any letter case; None if no one."""
        return self._users.get(name_key(nick))

    def claim(self, presence: Presence, nick: str) -> None:
        """C{presence} holds C{nick} from now on (the caller checked it is free)."""
        self._users[name_key(nick)] = presence

    def release(self, nick: str) -> None:
        """Nobody holds C{nick} any more."""
        del self._users[name_key(nick)]

    def online(self) -> Iterable[Presence]:
        """Everyone holding a nickname."""
        return self._users.values()

    def room(self, name: str) -> Room | None:
        """The room named C{name}, in any letter case; None if there is none."""
        return self._rooms.get(name_key(name))

    def open_room(self, name: str) -> Room:
        """A new, empty room named C{name} (the caller checked there is none)."""
        room = self._rooms[name_key(name)] = Room(name)
        return room

    def close_room(self, name: str) -> None:
        """The room named C{name} is gone (it was left empty)."""
        del self._rooms[name_key(name)]

    def rooms(self) -> Iterable[Room]:
        """Every room."""
        return self._rooms.values()
