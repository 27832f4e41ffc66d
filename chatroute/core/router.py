"""
Who is online, which rooms exist, and who gets which message.

The router holds all chat state and enforces the rules. It knows people only
as L{IParticipant}s and speaks to them in L{chatroute.core.events}; it never sees
a line of the wire protocol. What must outlive the process (accounts, messages
for offline users, room history) it keeps in an L{IStorage}.

Methods that may have to wait for storage return a Deferred, or None when
they finished at once; the hot paths (a direct message to someone online, a
room message) always finish at once.

With an L{IBackplane} (several nodes, one chat) the directory is the
backplane's copy of the network, and every change to names and rooms is
sent to the backplane, which checks and orders it and has every node apply
it through the C{apply_*} methods; those methods are also what a single node
does at once. Without one, nothing of this is on any path.
"""

import re
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroute.core.directory import (
    MODERATED,
    ROOM_MODES,
    SECRET,
    TOPIC_LOCK,
    LocalDirectory,
    Presence,
    Room,
)
from chatroute.core.errors import (
    AccountRequired,
    AlreadyBanned,
    AlreadyInRoom,
    AlreadyOperator,
    AlreadyVoiced,
    BackplaneUnavailable,
    BannedFromRoom,
    ChatError,
    InvalidNickname,
    InvalidRoomName,
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
    ReasonTooLong,
    TopicTooLong,
)
from chatroute.core.events import (
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
    LoggedIn,
    Membership,
    OperatorChanged,
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
from chatroute.core.interfaces import IBackplane, IDirectory, IParticipant, IStorage
from chatroute.storage import name_key

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}", re.ASCII)

log = Logger()


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """
    The router's tunable rules.

    @ivar require_account: guests may take a nickname but not chat.
    @ivar offline_cap: most messages kept for one offline account.
    @ivar join_history: room messages replayed on joining (0: none).
    @ivar max_history: most messages C{/history} replays at once.
    @ivar max_topic_length: the longest topic, in characters.
    @ivar max_reason_length: the longest reason for a kick, in characters.
    """

    require_account: bool = False
    offline_cap: int = 100
    join_history: int = 20
    max_history: int = 500
    max_topic_length: int = 390
    max_reason_length: int = 390


def _deliver_all(presences: list[Presence], event: Event) -> None:
    """Give C{event} to each presence; one that fails is logged and the rest still get it."""
    for presence in presences:
        try:
            presence.participant.deliver(event)
        except Exception:
            log.failure("delivering to {nick} failed", nick=presence.nick)


def _user_info(presence: Presence) -> UserInfo:
    """What is known of a registered presence."""
    nick = presence.nick or "?"
    account = nick if presence.account else None
    return UserInfo(nick, presence.user or nick, presence.real_name or nick, presence.away, account)


def _sorted_names(names: list[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=name_key))


def _log_failure(failure: Failure, what: str) -> None:
    log.failure("{what} failed", failure, what=what)


def _answer_failure(failure: Failure, presence: Presence, what: str) -> None:
    """Tell the participant of a refusal; log anything else."""
    if isinstance(failure.value, ChatError):
        presence.participant.reply_error(failure.value)
    else:
        _log_failure(failure, what)


class Router:
    """
    The chat's state and rules: nicknames, rooms and delivery.

    Front ends call L{connect} for each new connection and pass the
    L{Presence} it returns to every later call.
    """

    def __init__(
        self,
        storage: IStorage,
        clock: IReactorTime,
        settings: RouterSettings | None = None,
        directory: IDirectory | None = None,
        backplane: IBackplane | None = None,
    ) -> None:
        """
        @param storage: where accounts, offline messages and history are kept.
        @param clock: the time messages are stamped with.
        @param directory: who holds which nickname and which rooms exist;
            by default this process's own (L{LocalDirectory}).
        @param backplane: the other nodes of the chat, if there are any; its
            directory is then the router's.
        """
        self._storage = storage
        self._clock = clock
        self.settings = settings or RouterSettings()
        self._presences: set[Presence] = set()
        self._backplane = backplane
        if backplane is not None:
            directory = backplane.directory
            backplane.attach(self)
        self._directory: IDirectory = directory if directory is not None else LocalDirectory()
        self._holders = self._directory.holders
        self._peak_users = 0

    def connect(self, participant: IParticipant, peer: str = "?") -> Presence:
        """
        Start a participant for a newly connected, not yet registered participant.

        @param peer: where it connects from, for the log.
        """
        presence = Presence(participant, peer)
        self._presences.add(presence)
        return presence

    def disconnect(
        self, presence: Presence, tell_rooms: bool = True, reason: str | None = None
    ) -> None:
        """
        The participant is gone: leave every room and free the name.

        @param tell_rooms: tell the rooms' other members (not when everyone goes).
        @param reason: why the user quit, as they said (in L{Left}); cut to
            C{max_reason_length} characters, since a quit is never refused.
        """
        if reason is not None:
            reason = reason[: self.settings.max_reason_length] or None
        self._presences.discard(presence)
        if self._backplane is not None:
            self._backplane.release(presence, reason)
            return
        self._leave_everything(presence, tell_rooms, reason)

    def apply_gone(self, presence: Presence, reason: str | None, replaced: bool) -> None:
        """
        The network has let the participant go: out of every room (members
        are told), its name free. With C{replaced}, its account logged in
        elsewhere: it is told so and closed.
        """
        if replaced:
            self._presences.discard(presence)
        self._leave_everything(presence, True, reason)
        if replaced:
            presence.participant.close("logged in from another connection")

    def _leave_everything(self, presence: Presence, tell_rooms: bool, reason: str | None) -> None:
        nick = presence.nick
        if nick is None:
            return
        for room in list(presence.rooms.values()):
            self._remove_member(presence, room, disconnected=True, tell=tell_rooms, reason=reason)
        self._directory.release(nick)
        presence.nick = None
        presence.account = False
        presence.away = None

    def not_delivered(self, sender: Presence, error: ChatError) -> None:
        """
        A message from C{sender} did not reach its recipient after all (the
        recipient was dropped while it was being written): tell the sender.
        """
        sender.participant.reply_error(error)

    def close_all(self, reason: str) -> None:
        """Tell everyone connected why, and close their connections (server shutdown)."""
        for presence in list(self._presences):
            # Taken first: a backplane lets go of the participant on disconnect.
            participant = presence.participant
            self.disconnect(presence, tell_rooms=False)
            participant.close(reason)

    def register(self, presence: Presence, nick: str) -> Deferred[None] | None:
        """
        Give the participant a nickname as a guest, or change the one it has.

        Everyone sharing a room with a renamed user is told once; the
        presence itself gets L{Registered}. Changing to another nickname
        leaves an account the participant was logged in to; changing only the
        letter case of the account's name keeps it.

        @raise InvalidNickname: C{nick} breaks the naming rule.
        @raise NicknameTaken: another participant has it, in any letter case.
        @return: None, or a Deferred failing with L{NameRegistered} if
            C{nick} is an account.
        """
        if not _NAME.fullmatch(nick):
            raise InvalidNickname(nick)
        self._check_free(presence, nick)
        if presence.account and name_key(presence.nick or "") == name_key(nick):
            if self._backplane is not None:
                return Deferred.fromCoroutine(self._register_account(presence, nick))
            self._claim(presence, nick, account=True)
            presence.participant.deliver(Registered(nick))
            return None
        return Deferred.fromCoroutine(self._register_guest(presence, nick))

    async def _register_guest(self, presence: Presence, nick: str) -> None:
        account = await self._storage.get_account(nick)
        if account is not None:
            raise NameRegistered(account.name)
        self._check_free(presence, nick)
        await self._take(presence, nick, account=False)
        presence.participant.deliver(Registered(nick))

    async def _register_account(self, presence: Presence, nick: str) -> None:
        await self._take(presence, nick, account=True)
        presence.participant.deliver(Registered(nick))

    async def _take(
        self, presence: Presence, nick: str, account: bool, takeover: bool = False
    ) -> None:
        """Give the participant C{nick}: here, or across the network through the backplane."""
        if self._backplane is None:
            self._claim(presence, nick, account)
        else:
            await self._backplane.claim(presence, nick, account, takeover)

    def log_in(self, presence: Presence, name: str) -> Deferred[None]:
        """
        The participant has proved it owns the account C{name}: give it the name,
        then the messages kept for it.

        Another participant holding the name (logged in elsewhere) is told and
        closed. Kept messages are delivered oldest first, each with its
        time, and then forgotten.

        @return: Deferred firing once the kept messages are delivered.
        """
        if self._backplane is not None:
            return Deferred.fromCoroutine(self._log_in_everywhere(presence, name))
        holder = self._directory.holder(name)
        if holder is not None and holder is not presence:
            self.disconnect(holder)
            holder.participant.close("logged in from another connection")
        self._claim(presence, name, account=True)
        return Deferred.fromCoroutine(self._deliver_kept(presence, name))

    async def _log_in_everywhere(self, presence: Presence, name: str) -> None:
        # The backplane logs out any other connection to the account, on any node.
        await self._take(presence, name, account=True, takeover=True)
        await self._deliver_kept(presence, name)

    async def _deliver_kept(self, presence: Presence, name: str) -> None:
        backplane = self._backplane
        # One node at a time reads and forgets an account's messages: none is delivered twice.
        token = None if backplane is None else await backplane.lock_mailbox(name)
        try:
            messages = await self._storage.pending_messages(name)
            if not (presence.account and presence.nick == name):
                return  # renamed or gone meanwhile: keep them for the next login
            participant = presence.participant
            participant.deliver(LoggedIn(name, len(messages)))
            for message in messages:
                participant.deliver(
                    Replayed(
                        message.sent_at,
                        DirectMessage(message.sender, message.text, message.action),
                    )
                )
            if messages:
                await self._storage.delete_messages([message.id for message in messages])
        finally:
            if backplane is not None and token is not None:
                backplane.unlock_mailbox(name, token)

    def mark_account(self, presence: Presence, name: str) -> Deferred[None] | None:
        """
        The participant's nickname C{name} has just been made an account
        (it is in the store): the participant is logged in to it, and every
        node knows the name as an account.

        @return: None, or with a backplane a Deferred firing once this node
            has applied it. Should the backplane not be reachable, this
            node marks it at once, and tells the others once it is back.
        """
        if presence.nick is None or name_key(presence.nick) != name_key(name):
            return None
        if self._backplane is None:
            self.apply_account(presence)
            return None
        return Deferred.fromCoroutine(self._mark_account_everywhere(presence))

    async def _mark_account_everywhere(self, presence: Presence) -> None:
        assert self._backplane is not None
        try:
            await self._backplane.mark_account(presence)
        except BackplaneUnavailable:
            # The account is stored whatever the backplane says; the node
            # asserts its users again (accounts too) once Redis is back.
            self.apply_account(presence)

    def apply_account(self, presence: Presence) -> None:
        """The participant's nickname is an account now, and the participant logged in to it."""
        presence.account = True

    def send_direct(
        self, presence: Presence, to: str, text: str, action: bool = False, notice: bool = False
    ) -> Deferred[None] | None:
        """
        Deliver C{text} from the participant to the user named C{to}, or keep it
        for them if they are an account that is offline. If C{to} is away,
        the sender gets L{IsAway} with the away message.

        @param action: C{text} is what the sender does (C{/me}), not says.
        @param notice: C{text} is a notice, which nothing answers on its own
            (no L{IsAway}); kept for an offline account, it is kept as a message.

        @raise NotRegistered: the sender has no nickname.
        @raise AccountRequired: the sender is a guest and the server wants accounts.
        @return: None if delivered at once, else a Deferred firing once the
            message is on disk (the sender gets L{StoredForLater}), failing
            with L{NoSuchUser} if C{to} is neither online nor an account, or
            with L{chatroute.core.errors.MailboxFull}.
        """
        # The checks of _sender, spelled out: this is the hot path.
        sender = presence.nick
        if sender is None or (presence.account is False and self.settings.require_account):
            sender = self._sender(presence)
        # The directory's holder(to), spelled out: one call fewer for every message.
        recipient = self._holders.get(to.lower() if to.isascii() else name_key(to))
        if recipient is not None:
            recipient.participant.deliver(DirectMessage(sender, text, action, notice))
            if recipient.away is not None and recipient.nick is not None and not notice:
                presence.participant.deliver(IsAway(recipient.nick, recipient.away))
            return None
        return Deferred.fromCoroutine(self._keep(presence, sender, to, text, action))

    def keep_undelivered(self, sender: str, to: str, message: DirectMessage) -> None:
        """
        C{sender} sent C{message} to C{to}, who did not receive it (their
        node is gone, or they left a moment ago): keep it as for an offline
        account (the sender is told), or tell the sender there is no such
        user. A sender of another node is not told either way.
        """
        presence = self._directory.holder(sender)
        if presence is None or presence.nick is None:
            log.info("direct message from {sender}, gone too, dropped", sender=sender)
            return
        kept = Deferred.fromCoroutine(
            self._keep(presence, presence.nick, to, message.text, message.action, recheck=False)
        )
        kept.addErrback(_answer_failure, presence, "keeping an undelivered direct message")

    async def _keep(
        self,
        presence: Presence,
        sender: str,
        to: str,
        text: str,
        action: bool,
        recheck: bool = True,
    ) -> None:
        account = await self._storage.get_account(to)
        recipient = self._directory.holder(to) if recheck else None
        if recipient is not None:  # logged in while we looked
            recipient.participant.deliver(DirectMessage(sender, text, action))
            return
        if account is None:
            raise NoSuchUser(to)
        await self._storage.store_message(
            account.name, sender, text, self._clock.seconds(), self.settings.offline_cap, action
        )
        presence.participant.deliver(StoredForLater(account.name))

    def send_room(
        self,
        presence: Presence,
        room_name: str,
        text: str,
        action: bool = False,
        notice: bool = False,
    ) -> Deferred[None] | None:
        """
        Deliver C{text} from the participant to every member of the room, the
        sender too, and add it to the room's history.

        @param action: C{text} is what the sender does (C{/me}), not says.
        @param notice: C{text} is a notice (history keeps it as a message).

        @raise NotRegistered: the sender has no nickname.
        @raise AccountRequired: the sender is a guest and the server wants accounts.
        @raise InvalidRoomName: the name breaks the naming rule.
        @raise NoSuchRoom: there is no such room.
        @raise NotInRoom: the sender is not a member.
        @raise Moderated: the room is moderated and the sender neither an
            operator nor voiced.
        @return: None, or with a backplane a Deferred firing once the room has it.
        """
        sender = self._sender(presence)
        try:
            room = self._room(room_name)
        except NoSuchRoom:
            # Only a name that can be a room's is no such room; checked here, off the common path.
            if not _NAME.fullmatch(room_name[1:]):
                raise InvalidRoomName(room_name) from None
            raise
        key = name_key(sender)
        if key not in room.members:
            raise NotInRoom(room.name)
        if MODERATED in room.modes and key not in room.operators and key not in room.voiced:
            raise Moderated(room.name)
        if self._backplane is not None:
            said = self._backplane.say(
                presence, RoomMessage(room.name, sender, text, action, notice)
            )
            return said.addCallback(
                lambda _: self._keep_in_history(room.name, sender, text, action)
            )
        _deliver_all(
            list(room.members.values()), RoomMessage(room.name, sender, text, action, notice)
        )
        self._keep_in_history(room.name, sender, text, action)
        return None

    def _keep_in_history(self, room_name: str, sender: str, text: str, action: bool) -> None:
        """Add a room message to the room's history, in the background (nobody waits for it)."""
        self._storage.append_history(
            room_name, sender, text, self._clock.seconds(), action
        ).addErrback(_log_failure, "keeping a room message in history")

    def apply_say(self, room_name: str, message: RoomMessage) -> None:
        """The network's room C{room_name} got C{message}: its members here are given it."""
        room = self._directory.room(room_name)
        if room is not None:
            _deliver_all(list(room.members.values()), message)

    def join(self, presence: Presence, room_name: str) -> Deferred[None] | None:
        """
        Add the participant to the room, creating the room if it does not
        exist, with the participant as its first operator.

        Every member, the joiner included, is told with L{Joined}; the joiner
        then gets the member list, the topic if the room has one, and the
        room's recent history.

        @raise NotRegistered: the participant has no nickname.
        @raise AccountRequired: the participant is a guest and the server wants accounts.
        @raise InvalidRoomName: the name breaks the naming rule.
        @raise AlreadyInRoom: the participant is already a member.
        @raise BannedFromRoom: the participant's nickname is banned from the room.
        @return: None, or a Deferred firing once the history is delivered.
        """
        nick = self._sender(presence)
        if not (room_name[:1] == "#" and _NAME.fullmatch(room_name[1:])):
            raise InvalidRoomName(room_name)
        key = name_key(nick)
        room = self._directory.room(room_name)
        if room is not None and key in room.members:
            raise AlreadyInRoom(room.name)
        if room is not None and key in room.bans:
            raise BannedFromRoom(room.name)
        if self._backplane is not None:
            return Deferred.fromCoroutine(
                self._join_everywhere(presence, room_name, self._clock.seconds())
            )
        room = self.apply_join(presence, room_name, creator=room is None)
        if not self.settings.join_history:
            return None
        return Deferred.fromCoroutine(
            self._replay(presence, room, self.settings.join_history, quiet_if_empty=True)
        )

    async def _join_everywhere(self, presence: Presence, room_name: str, at: float) -> None:
        assert self._backplane is not None
        await self._backplane.join(presence, room_name, at)
        room = presence.rooms.get(name_key(room_name))
        if room is not None and self.settings.join_history:
            await self._replay(presence, room, self.settings.join_history, quiet_if_empty=True)

    def apply_join(
        self, presence: Presence, room_name: str, creator: bool, created_at: float | None = None
    ) -> Room:
        """
        The participant joins the room, made now if there is none; the
        C{creator} is its first operator. Every member is told; the joiner
        gets the member list and the topic.

        @param created_at: when the room was made, if it is new (by default: now).
        """
        nick = self._nick(presence)
        key = name_key(nick)
        room = self._directory.room(room_name)
        if room is None:
            room = self._directory.open_room(room_name)
            room.created_at = self._clock.seconds() if created_at is None else created_at
            log.info("room {room} created by {nick}", room=room_name, nick=nick)
        if creator:
            room.operators.add(key)
        room.members[key] = presence
        presence.rooms[name_key(room_name)] = room
        _deliver_all(list(room.members.values()), Joined(room.name, nick))
        presence.participant.deliver(self.who(room.name))
        if room.topic is not None:
            presence.participant.deliver(self._topic(room))
        return room

    def history(self, presence: Presence, room_name: str, count: int | None) -> Deferred[None]:
        """
        Replay the room's last C{count} messages (default: as on joining; at
        most C{max_history}) to a member.

        @raise NoSuchRoom: there is no such room.
        @raise NotInRoom: the participant is not a member.
        @return: Deferred firing once the history is delivered.
        """
        nick = self._sender(presence)
        room = self._room(room_name)
        if name_key(nick) not in room.members:
            raise NotInRoom(room.name)
        wanted = self.settings.join_history if count is None else count
        return Deferred.fromCoroutine(
            self._replay(
                presence, room, min(wanted, self.settings.max_history), quiet_if_empty=False
            )
        )

    async def _replay(
        self, presence: Presence, room: Room, count: int, quiet_if_empty: bool
    ) -> None:
        entries = await self._storage.recent_history(room.name, count) if count > 0 else []
        if not entries and quiet_if_empty:
            return
        participant = presence.participant
        participant.deliver(HistoryStart(room.name, len(entries)))
        for entry in entries:
            participant.deliver(
                Replayed(
                    entry.sent_at, RoomMessage(room.name, entry.sender, entry.text, entry.action)
                )
            )

    def leave(
        self, presence: Presence, room_name: str, reason: str | None = None
    ) -> Deferred[None] | None:
        """
        Take the participant out of the room; members and the leaver are told,
        with C{reason} if one is given.

        A room left empty disappears (its history stays).

        @raise NotRegistered: the participant has no nickname.
        @raise NoSuchRoom: there is no such room.
        @raise NotInRoom: the participant is not a member.
        @raise ReasonTooLong: C{reason} is over C{max_reason_length} characters.
        """
        nick = self._nick(presence)
        room = self._room(room_name)
        if name_key(nick) not in room.members:
            raise NotInRoom(room.name)
        if reason is not None and len(reason) > self.settings.max_reason_length:
            raise ReasonTooLong(self.settings.max_reason_length)
        reason = reason or None
        if self._backplane is not None:
            return self._backplane.leave(presence, room.name, reason)
        self.apply_leave(presence, room, reason)
        return None

    def apply_leave(self, presence: Presence, room: Room, reason: str | None) -> None:
        """The participant leaves the room: it and the members are told."""
        presence.participant.deliver(Left(room.name, self._nick(presence), reason=reason))
        self._remove_member(presence, room, disconnected=False, reason=reason)

    def rooms(self, asker: Presence | None = None) -> RoomList:
        """
        Every room with its member count, by name; for C{asker}, not the
        secret rooms it is not in.
        """
        listed = sorted(
            (room for room in self._directory.rooms() if self._visible(room, asker)),
            key=lambda room: name_key(room.name),
        )
        return RoomList(tuple((room.name, len(room.members)) for room in listed))

    def connected(self) -> list[Presence]:
        """This node's connected participants, with a nickname or not (for monitoring)."""
        return list(self._presences)

    def counts(self) -> Counts:
        """How many users are online, connections unregistered and rooms open; the peak of users."""
        users = len(self._holders)
        unregistered = sum(1 for presence in self._presences if presence.nick is None)
        rooms = sum(1 for room in self._directory.rooms())
        return Counts(users, unregistered, rooms, max(self._peak_users, users))

    def who(
        self, room_name: str | None = None, details: bool = False, asker: Presence | None = None
    ) -> UserList:
        """
        The online users, or the members of one room, by name.

        @param details: tell each user's L{UserInfo} too (C{users}).
        @param asker: who asks: a secret room is hidden from non-members.
        @raise NoSuchRoom: C{room_name} names no room (that C{asker} may see).
        """
        room = None if room_name is None else self._visible_room(room_name, asker)
        members = self._directory.online() if room is None else room.members.values()
        presences = sorted(
            (presence for presence in members if presence.nick),
            key=lambda presence: name_key(presence.nick or ""),
        )
        nicks = tuple(presence.nick or "" for presence in presences)
        users = tuple(_user_info(presence) for presence in presences) if details else ()
        if room is None:
            return UserList(None, nicks, (), users)
        operators = tuple(nick for nick in nicks if name_key(nick) in room.operators)
        voiced = tuple(nick for nick in nicks if name_key(nick) in room.voiced)
        return UserList(room.name, nicks, operators, users, voiced, SECRET in room.modes)

    def whois(self, nick: str, asker: Presence | None = None) -> UserInfo:
        """
        What is known of the online user C{nick} (in any letter case).

        @param asker: who asks: then the rooms C{nick} is in that C{asker}
            may see (not the secret ones it is not in) are told too.
        @raise NoSuchUser: no one online has the nickname.
        """
        holder = self._directory.holder(nick)
        if holder is None or holder.nick is None:
            raise NoSuchUser(nick)
        info = _user_info(holder)
        if asker is not None:
            key = name_key(holder.nick)
            info.rooms = tuple(
                Membership(room.name, key in room.operators, key in room.voiced)
                for room in holder.rooms.values()
                if self._visible(room, asker)
            )
        return info

    def set_client_info(self, presence: Presence, user: str | None, real_name: str | None) -> None:
        """
        Keep the user name and real name the participant's client gave
        (IRC's C{USER}), shown by L{who} and L{whois}; None: the nickname.
        """
        presence.user = user
        presence.real_name = real_name

    def set_away(self, presence: Presence, message: str | None) -> Deferred[None] | None:
        """
        Mark the participant away with C{message}, or (None or empty) back;
        it is told with L{AwayChanged}. Whoever sends it a direct message
        while it is away gets L{IsAway}. Going away tells no one else.

        @raise NotRegistered: the participant has no nickname.
        """
        self._nick(presence)
        if self._backplane is not None:
            return self._backplane.set_away(presence, message or None)
        self.apply_away(presence, message or None)
        return None

    def apply_away(self, presence: Presence, message: str | None) -> None:
        """The participant is away with C{message}, or (None) back; it is told."""
        presence.away = message
        presence.participant.deliver(AwayChanged(message))

    def topic(self, room_name: str, asker: Presence | None = None) -> RoomTopic:
        """
        The room's topic (anyone may ask, member or not; of a secret room,
        only members).

        @raise NoSuchRoom: C{room_name} names no room (that C{asker} may see).
        """
        return self._topic(self._visible_room(room_name, asker))

    def _topic(self, room: Room) -> RoomTopic:
        return RoomTopic(room.name, room.topic, room.topic_by, room.topic_at)

    def set_topic(
        self, presence: Presence, room_name: str, topic: str | None
    ) -> Deferred[None] | None:
        """
        Set the room's topic, or clear it (None or empty); every member is
        told with L{TopicChanged}. The room keeps who set it and when (the
        clock's seconds). The topic lives as long as the room.

        @raise NotInRoom: the participant is not a member.
        @raise OperatorRequired: the participant is not an operator of the
            room, and the room's topic is locked (C{topic-lock}).
        @raise TopicTooLong: C{topic} is over C{max_topic_length} characters.
        """
        nick, room = self._operator(presence, room_name, needed_for=TOPIC_LOCK)
        if topic is not None and len(topic) > self.settings.max_topic_length:
            raise TopicTooLong(self.settings.max_topic_length)
        if self._backplane is not None:
            return self._backplane.set_topic(
                presence, room.name, topic or None, self._clock.seconds()
            )
        self.apply_topic(room, nick, topic or None, self._clock.seconds())
        return None

    def apply_topic(self, room: Room, nick: str, topic: str | None, at: float) -> None:
        """C{nick} set the room's topic at C{at}, or cleared it; every member is told."""
        room.topic = topic
        room.topic_by = nick if topic is not None else None
        room.topic_at = at if topic is not None else None
        _deliver_all(list(room.members.values()), TopicChanged(room.name, nick, topic))

    def set_operator(
        self, presence: Presence, room_name: str, nick: str, operator: bool
    ) -> Deferred[None] | None:
        """
        Make the member C{nick} an operator of the room (C{operator}), or take
        that away; every member is told with L{OperatorChanged}.

        @raise NotInRoom: the participant is not a member.
        @raise OperatorRequired: the participant is not an operator of the room.
        @raise NoSuchUser: no one online is C{nick}.
        @raise NoSuchMember: C{nick} is online but not a member.
        @raise AlreadyOperator: C{operator}, and the member already is one.
        @raise NotOperator: not C{operator}, and the member is not one.
        """
        by, room = self._operator(presence, room_name)
        member = self._nick(self._member(room, nick))
        key = name_key(member)
        if operator and key in room.operators:
            raise AlreadyOperator(room.name, member)
        if not operator and key not in room.operators:
            raise NotOperator(room.name, member)
        if self._backplane is not None:
            return self._backplane.set_operator(presence, room.name, member, operator)
        self.apply_operator(room, member, by, operator)
        return None

    def apply_operator(self, room: Room, member: str, by: str, operator: bool) -> None:
        """C{by} made the member an operator of the room, or no longer; every member is told."""
        if operator:
            room.operators.add(name_key(member))
        else:
            room.operators.discard(name_key(member))
        _deliver_all(list(room.members.values()), OperatorChanged(room.name, member, by, operator))

    def kick(
        self, presence: Presence, room_name: str, nick: str, reason: str | None
    ) -> Deferred[None] | None:
        """
        Put the member C{nick} out of the room: every member, C{nick} too, is
        told with L{Kicked}, and then C{nick} is no longer a member.

        @raise NotInRoom: the participant is not a member.
        @raise OperatorRequired: the participant is not an operator of the room.
        @raise ReasonTooLong: C{reason} is over C{max_reason_length} characters.
        @raise NoSuchUser: no one online is C{nick}.
        @raise NoSuchMember: C{nick} is online but not a member.
        """
        by, room = self._operator(presence, room_name)
        if reason is not None and len(reason) > self.settings.max_reason_length:
            raise ReasonTooLong(self.settings.max_reason_length)
        member = self._member(room, nick)
        if self._backplane is not None:
            return self._backplane.kick(presence, room.name, self._nick(member), reason or None)
        self.apply_kick(room, member, by, reason or None)
        return None

    def set_ban(
        self, presence: Presence, room_name: str, nick: str, banned: bool
    ) -> Deferred[None] | None:
        """
        Ban the nickname C{nick} (in any letter case) from the room
        (C{banned}), or lift the ban; every member is told with
        L{BanChanged}. A banned member is then kicked (L{Kicked}, no reason).
        Bans live as long as the room.

        @raise NotInRoom: the participant is not a member.
        @raise OperatorRequired: the participant is not an operator of the room.
        @raise InvalidNickname: C{nick} breaks the naming rule.
        @raise AlreadyBanned: C{banned}, and C{nick} already is.
        @raise NotBanned: not C{banned}, and C{nick} is not.
        """
        by, room = self._operator(presence, room_name)
        if not _NAME.fullmatch(nick):
            raise InvalidNickname(nick)
        key = name_key(nick)
        if not banned and key not in room.bans:
            raise NotBanned(room.name, nick)
        if banned and key in room.bans:
            raise AlreadyBanned(room.name, room.bans[key])
        if self._backplane is not None:
            return self._backplane.set_ban(presence, room.name, nick, banned)
        member = room.members.get(key)
        shown = room.bans[key] if not banned else nick if member is None else self._nick(member)
        self.apply_ban(room, shown, by, banned)
        return None

    def apply_ban(self, room: Room, shown: str, by: str, banned: bool) -> None:
        """
        C{by} banned the nickname C{shown} from the room, or lifted the ban;
        every member is told, and a banned member is then kicked.
        """
        key = name_key(shown)
        members = list(room.members.values())
        if not banned:
            room.bans.pop(key, None)
            _deliver_all(members, BanChanged(room.name, shown, by, False))
            return
        room.bans[key] = shown
        _deliver_all(members, BanChanged(room.name, shown, by, True))
        member = room.members.get(key)
        if member is not None:
            self.apply_kick(room, member, by, None)

    def bans(self, room_name: str, asker: Presence | None = None) -> BanList:
        """
        The nicknames banned from the room, by name (anyone may ask; of a
        secret room, only members).

        @raise NoSuchRoom: C{room_name} names no room (that C{asker} may see).
        """
        room = self._visible_room(room_name, asker)
        return BanList(room.name, _sorted_names(list(room.bans.values())))

    def set_voice(
        self, presence: Presence, room_name: str, nick: str, voiced: bool
    ) -> Deferred[None] | None:
        """
        Give the member C{nick} a voice in the room (C{voiced}), or take it
        away; every member is told with L{VoiceChanged}. In a moderated
        room only operators and voiced members send.

        @raise NotInRoom: the participant is not a member.
        @raise OperatorRequired: the participant is not an operator of the room.
        @raise NoSuchUser: no one online is C{nick}.
        @raise NoSuchMember: C{nick} is online but not a member.
        @raise AlreadyVoiced: C{voiced}, and the member already has a voice.
        @raise NotVoiced: not C{voiced}, and the member has none.
        @return: None, or with a backplane a Deferred firing once the change
            is applied here (failing as above if another node's change came first).
        """
        by, room = self._operator(presence, room_name)
        member = self._nick(self._member(room, nick))
        key = name_key(member)
        if voiced and key in room.voiced:
            raise AlreadyVoiced(room.name, member)
        if not voiced and key not in room.voiced:
            raise NotVoiced(room.name, member)
        if self._backplane is not None:
            return self._backplane.set_voice(presence, room.name, member, voiced)
        self.apply_voice(room, member, by, voiced)
        return None

    def apply_voice(self, room: Room, member: str, by: str, voiced: bool) -> None:
        """C{by} gave the member a voice in the room, or took it away; every member is told."""
        if voiced:
            room.voiced.add(name_key(member))
        else:
            room.voiced.discard(name_key(member))
        _deliver_all(list(room.members.values()), VoiceChanged(room.name, member, by, voiced))

    def set_room_mode(
        self, presence: Presence, room_name: str, mode: str, on: bool
    ) -> Deferred[None] | None:
        """
        Turn the room's mode C{mode} (one of L{ROOM_MODES}) on (C{on}) or
        off; every member is told with L{RoomModeChanged}. Modes live as
        long as the room.

        @raise ValueError: C{mode} is not a room mode (front ends check first).
        @raise NotInRoom: the participant is not a member.
        @raise OperatorRequired: the participant is not an operator of the room.
        @raise ModeUnchanged: the mode already is as asked.
        @return: None, or with a backplane a Deferred firing once the change
            is applied here (failing as above if another node's change came first).
        """
        if mode not in ROOM_MODES:
            raise ValueError(f"not a room mode: {mode!r}")
        by, room = self._operator(presence, room_name)
        if (mode in room.modes) == on:
            raise ModeUnchanged(room.name, mode, on)
        if self._backplane is not None:
            return self._backplane.set_room_mode(presence, room.name, mode, on)
        self.apply_room_mode(room, by, mode, on)
        return None

    def apply_room_mode(self, room: Room, by: str, mode: str, on: bool) -> None:
        """C{by} turned the room's mode on or off; every member is told."""
        if on:
            room.modes.add(mode)
        else:
            room.modes.discard(mode)
        _deliver_all(list(room.members.values()), RoomModeChanged(room.name, by, mode, on))

    def room_modes(self, room_name: str, asker: Presence | None = None) -> RoomModes:
        """
        The room's modes and when it was created (anyone may ask; of a
        secret room, only members).

        @raise NoSuchRoom: C{room_name} names no room (that C{asker} may see).
        """
        room = self._visible_room(room_name, asker)
        modes = tuple(mode for mode in ROOM_MODES if mode in room.modes)
        return RoomModes(room.name, modes, room.created_at)

    def _visible(self, room: Room, asker: Presence | None) -> bool:
        """Whether C{asker} may see the room: it is not secret, or C{asker} is in it."""
        return SECRET not in room.modes or asker is None or name_key(room.name) in asker.rooms

    def _visible_room(self, room_name: str, asker: Presence | None) -> Room:
        """The room named C{room_name}; a secret one C{asker} is not in is no such room."""
        room = self._room(room_name)
        if not self._visible(room, asker):
            raise NoSuchRoom(room_name)
        return room

    def _operator(
        self, presence: Presence, room_name: str, needed_for: str | None = None
    ) -> tuple[str, Room]:
        """
        The nickname of a participant who is an operator of the room, and the
        room; with C{needed_for}, a room mode, a member is enough while the
        mode is off.
        """
        nick = self._sender(presence)
        room = self._room(room_name)
        key = name_key(nick)
        if key not in room.members:
            raise NotInRoom(room.name)
        if key not in room.operators and (needed_for is None or needed_for in room.modes):
            raise OperatorRequired(room.name)
        return nick, room

    def _member(self, room: Room, nick: str) -> Presence:
        """
        The room's member C{nick}, in any letter case.

        @raise NoSuchUser: no one online has the nickname.
        @raise NoSuchMember: the user is online but not a member.
        """
        member = room.members.get(name_key(nick))
        if member is None:
            if self._directory.holder(nick) is None:
                raise NoSuchUser(nick)
            raise NoSuchMember(room.name, nick)
        return member

    def apply_kick(self, room: Room, member: Presence, by: str, reason: str | None) -> None:
        """Tell every member, C{member} too, that C{by} kicked it; then it is out."""
        nick = self._nick(member)
        _deliver_all(list(room.members.values()), Kicked(room.name, nick, by, reason))
        self._remove_member(member, room, disconnected=False, tell=False)
        log.info("{nick} kicked from {room} by {by}", nick=nick, room=room.name, by=by)

    def _check_free(self, presence: Presence, nick: str) -> None:
        holder = self._directory.holder(nick)
        if holder is not None and holder is not presence:
            raise NicknameTaken(holder.nick or nick)

    def apply_claim(self, presence: Presence, nick: str, account: bool) -> None:
        """The network gave the participant C{nick}: as L{_claim}."""
        self._claim(presence, nick, account)

    def _claim(self, presence: Presence, nick: str, account: bool) -> None:
        """Give the participant C{nick} (free, or its own), keeping its rooms."""
        key = name_key(nick)
        old = presence.nick
        if old is not None:
            old_key = name_key(old)
            self._directory.release(old)
            for room in presence.rooms.values():
                del room.members[old_key]
                room.members[key] = presence
                if old_key in room.operators:
                    room.operators.discard(old_key)
                    room.operators.add(key)
                if old_key in room.voiced:
                    room.voiced.discard(old_key)
                    room.voiced.add(key)
        self._directory.claim(presence, nick)
        presence.nick = nick
        if old is None:
            self._peak_users = max(self._peak_users, len(self._holders))
        presence.account = account
        if old != nick:
            log.info("{peer} is {nick}", peer=presence.peer, nick=nick)
        if old is not None and old != nick:
            _deliver_all(self._roommates(presence), Renamed(old, nick))

    def _nick(self, presence: Presence) -> str:
        if presence.nick is None:
            raise NotRegistered()
        return presence.nick

    def _sender(self, presence: Presence) -> str:
        """The nickname of a participant allowed to chat."""
        nick = self._nick(presence)
        if self.settings.require_account and not presence.account:
            raise AccountRequired()
        return nick

    def _room(self, room_name: str) -> Room:
        """The room named C{room_name}; a name without C{#} is refused as such."""
        if room_name[:1] != "#":
            raise InvalidRoomName(room_name)
        room = self._directory.room(room_name)
        if room is None:
            raise NoSuchRoom(room_name)
        return room

    def _roommates(self, presence: Presence) -> list[Presence]:
        """Everyone sharing at least one room with the participant, once each, not itself."""
        mates: dict[int, Presence] = {}
        for room in presence.rooms.values():
            for member in room.members.values():
                if member is not presence:
                    mates[id(member)] = member
        return list(mates.values())

    def _remove_member(
        self,
        presence: Presence,
        room: Room,
        disconnected: bool,
        tell: bool = True,
        reason: str | None = None,
    ) -> None:
        nick = self._nick(presence)
        del room.members[name_key(nick)]
        room.operators.discard(name_key(nick))
        room.voiced.discard(name_key(nick))
        del presence.rooms[name_key(room.name)]
        if room.members:
            if tell:
                _deliver_all(
                    list(room.members.values()), Left(room.name, nick, disconnected, reason)
                )
        else:
            self._directory.close_room(room.name)
            log.info("room {room} closed", room=room.name)
