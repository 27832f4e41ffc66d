"""
Who is online, which rooms exist, and who gets which message.

The router holds all chat state and enforces the rules. It knows people only
as L{IParticipant}s and speaks to them in L{chatroute.events}; it never sees
a line of the wire protocol.
"""

import re
from dataclasses import dataclass, field

from twisted.logger import Logger

from chatroute.errors import (
    AlreadyInRoom,
    InvalidNickname,
    InvalidRoomName,
    NicknameTaken,
    NoSuchRoom,
    NoSuchUser,
    NotInRoom,
    NotRegistered,
)
from chatroute.events import (
    DirectMessage,
    Event,
    Joined,
    Left,
    Registered,
    Renamed,
    RoomList,
    RoomMessage,
    UserList,
)
from chatroute.interfaces import IParticipant

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}", re.ASCII)

log = Logger()


def _key(name: str) -> str:
    """Names are unique case-insensitively; this is the form they are compared in."""
    return name.lower()


@dataclass(eq=False, slots=True)
class Session:
    """
    One participant's standing with the router.

    @ivar nick: the nickname as its owner typed it; None until registered.
    @ivar rooms: the rooms the participant is in, by key.
    """

    participant: IParticipant
    nick: str | None = None
    rooms: dict[str, "Room"] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Room:
    """A named group of sessions; C{members} are keyed by nickname key, in join order."""

    name: str
    members: dict[str, Session] = field(default_factory=dict)


def _deliver_all(sessions: list[Session], event: Event) -> None:
    """Give C{event} to each session; one that fails is logged and the rest still get it."""
    for session in sessions:
        try:
            session.participant.deliver(event)
        except Exception:
            log.failure("delivering to {nick} failed", nick=session.nick)


def _sorted_names(names: list[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=_key))


class Router:
    """
    The chat's state and rules: nicknames, rooms and delivery.

    Front ends call L{connect} for each new connection and pass the
    L{Session} it returns to every later call.
    """

    def __init__(self) -> None:
        self._users: dict[str, Session] = {}
        self._rooms: dict[str, Room] = {}

    def connect(self, participant: IParticipant) -> Session:
        """Start a session for a newly connected, not yet registered participant."""
        return Session(participant)

    def disconnect(self, session: Session) -> None:
        """The participant is gone: leave every room (members are told) and free the name."""
        nick = session.nick
        if nick is None:
            return
        for room in list(session.rooms.values()):
            self._remove_member(session, room, disconnected=True)
        del self._users[_key(nick)]
        session.nick = None

    def register(self, session: Session, nick: str) -> None:
        """
        Give the session a nickname, or change the one it has.

        Everyone sharing a room with a renamed user is told once; the
        session itself gets L{Registered}.

        @raise InvalidNickname: C{nick} breaks the naming rule.
        @raise NicknameTaken: another session has it, in any letter case.
        """
        if not _NAME.fullmatch(nick):
            raise InvalidNickname(nick)
        key = _key(nick)
        holder = self._users.get(key)
        if holder is not None and holder is not session:
            raise NicknameTaken(holder.nick or nick)
        old = session.nick
        if old is not None:
            old_key = _key(old)
            del self._users[old_key]
            for room in session.rooms.values():
                del room.members[old_key]
                room.members[key] = session
        self._users[key] = session
        session.nick = nick
        if old is not None and old != nick:
            _deliver_all(self._roommates(session), Renamed(old, nick))
        session.participant.deliver(Registered(nick))

    def send_direct(self, session: Session, to: str, text: str) -> None:
        """
        Deliver C{text} from the session to the user named C{to}.

        @raise NotRegistered: the sender has no nickname.
        @raise NoSuchUser: no one online is called C{to}.
        """
        sender = self._nick(session)
        recipient = self._users.get(_key(to))
        if recipient is None:
            raise NoSuchUser(to)
        recipient.participant.deliver(DirectMessage(sender, text))

    def send_room(self, session: Session, room_name: str, text: str) -> None:
        """
        Deliver C{text} from the session to every member of the room, the sender too.

        @raise NotRegistered: the sender has no nickname.
        @raise NoSuchRoom: there is no such room.
        @raise NotInRoom: the sender is not a member.
        """
        sender = self._nick(session)
        room = self._room(room_name)
        if _key(sender) not in room.members:
            raise NotInRoom(room.name)
        _deliver_all(list(room.members.values()), RoomMessage(room.name, sender, text))

    def join(self, session: Session, room_name: str) -> None:
        """
        Add the session to the room, creating the room if it does not exist.

        Every member, the joiner included, is told with L{Joined}; the joiner
        then gets the member list.

        @raise NotRegistered: the session has no nickname.
        @raise InvalidRoomName: the name breaks the naming rule.
        @raise AlreadyInRoom: the session is already a member.
        """
        nick = self._nick(session)
        if not (room_name[:1] == "#" and _NAME.fullmatch(room_name[1:])):
            raise InvalidRoomName(room_name)
        room_key = _key(room_name)
        room = self._rooms.get(room_key)
        if room is None:
            room = self._rooms[room_key] = Room(room_name)
            log.info("room {room} created by {nick}", room=room_name, nick=nick)
        elif _key(nick) in room.members:
            raise AlreadyInRoom(room.name)
        room.members[_key(nick)] = session
        session.rooms[room_key] = room
        _deliver_all(list(room.members.values()), Joined(room.name, nick))
        session.participant.deliver(self.who(room.name))

    def leave(self, session: Session, room_name: str) -> None:
        """
        Take the session out of the room; members and the leaver are told.

        A room left empty disappears.

        @raise NotRegistered: the session has no nickname.
        @raise NoSuchRoom: there is no such room.
        @raise NotInRoom: the session is not a member.
        """
        nick = self._nick(session)
        room = self._room(room_name)
        if _key(nick) not in room.members:
            raise NotInRoom(room.name)
        session.participant.deliver(Left(room.name, nick))
        self._remove_member(session, room, disconnected=False)

    def rooms(self) -> RoomList:
        """Every room with its member count, by name."""
        listed = sorted(self._rooms.values(), key=lambda room: _key(room.name))
        return RoomList(tuple((room.name, len(room.members)) for room in listed))

    def who(self, room_name: str | None = None) -> UserList:
        """
        The online users, or the members of one room, by name.

        @raise NoSuchRoom: C{room_name} names no room.
        """
        if room_name is None:
            return UserList(None, _sorted_names([s.nick for s in self._users.values() if s.nick]))
        room = self._room(room_name)
        return UserList(room.name, _sorted_names([s.nick for s in room.members.values() if s.nick]))

    def _nick(self, session: Session) -> str:
        if session.nick is None:
            raise NotRegistered()
        return session.nick

    def _room(self, room_name: str) -> Room:
        room = self._rooms.get(_key(room_name))
        if room is None:
            raise NoSuchRoom(room_name)
        return room

    def _roommates(self, session: Session) -> list[Session]:
        """Everyone sharing at least one room with the session, once each, not itself."""
        mates: dict[int, Session] = {}
        for room in session.rooms.values():
            for member in room.members.values():
                if member is not session:
                    mates[id(member)] = member
        return list(mates.values())

    def _remove_member(self, session: Session, room: Room, disconnected: bool) -> None:
        nick = self._nick(session)
        del room.members[_key(nick)]
        del session.rooms[_key(room.name)]
        if room.members:
            _deliver_all(list(room.members.values()), Left(room.name, nick, disconnected))
        else:
            del self._rooms[_key(room.name)]
            log.info("room {room} closed", room=room.name)
