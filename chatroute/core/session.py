"""
One connection's standing, whatever its front end.

A L{ConnectionSession} owns everything a connection does that does not
depend on its wire format: admission against the connection limits, the
flood bucket, the register and idle timeouts, dropping a client that does
not read, keeping replies in request order while a request waits for
storage, the password-over-plain-TCP check, the dispatch of commands to the
router and accounts, the one error handler, and the goodbye.

A front end gives it lines (as its L{IWireFormat} parses them into commands)
and an L{ILink} to write to; it gives the front end encoded events. The
L{Hub} is what every session shares, whatever its front end: one router,
one connection count, one set of limits.
"""

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.core.accounts import Accounts
from chatroute.core.commands import (
    ChangePassword,
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
    ShowCounts,
    ShowLimits,
    ShowRoomModes,
    ShowTopic,
    Who,
    Whois,
)
from chatroute.core.deadlines import Deadlines, Entry
from chatroute.core.directory import Presence
from chatroute.core.errors import (
    ChatError,
    Flooding,
    InternalError,
    LineTooLong,
    NotReading,
    PasswordNeedsTLS,
    ServerPasswordRequired,
    WrongServerPassword,
)
from chatroute.core.events import Event, LimitsInfo, Notice, PasswordAccepted
from chatroute.core.interfaces import ILink, IParticipant, IWireFormat
from chatroute.core.limits import ConnectionCounter, Limits, TokenBucket
from chatroute.core.router import Router

DEFAULT_MAX_LINE_LENGTH = 4096
CLOSE_GRACE = 10.0
"""Seconds a client gets to complete a close the server started, before it is aborted."""


@dataclass(frozen=True, slots=True)
class Peer:
    """
    Where a connection comes from.

    @ivar host: the address, for the per-address limit and the login throttle.
    @ivar shown: how it is shown to the client and in the log (C{host:port}).
    @ivar secure: passwords may travel on it (TLS, or this machine).
    """

    host: str
    shown: str
    secure: bool


def is_loopback(host: str) -> bool:
    """Whether C{host} is an IP address of this machine's loopback."""
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class Outbox:
    """
    Holds what is written to clients while one client's input is carried
    out, then writes it, one write per client.

    A chunk read from one client often holds many lines for the same
    recipient (a burst of direct messages, several room messages); this
    turns them into one write and one system call for that recipient.

    The session reading (the C{reader}) sets C{collecting} when it read more
    than one line (a single line has nothing to gather); a session that
    holds data while collecting is in C{waiting}; L{flush} ends it. The
    sessions set these fields themselves rather than call methods, as they
    do it for every read and delivery.

    As everything read and written passes here, the outbox also counts it,
    for monitoring (L{chatroute.metrics} reads the counts when scraped):
    plain integers, added to once per read rather than once per line or
    delivery where that can be done, and never through a call.

    @ivar received: lines received from clients, of every front end, since
        the start (refused ones too: too long, flooding, malformed).
    @ivar sent: events and errors sent to clients since the start. What a
        client is sent while collecting is counted when it is written: one
        for each client in C{waiting}, here, and the rest of a longer batch
        by L{ConnectionSession.flush}.
    """

    __slots__ = ("collecting", "reader", "received", "sent", "waiting")

    def __init__(self) -> None:
        self.collecting = False
        self.reader: ConnectionSession | None = None
        self.waiting: list[ConnectionSession] = []
        self.received = 0
        self.sent = 0

    def flush(self) -> None:
        """Write everything held, and stop holding."""
        self.collecting = False
        waiting = self.waiting
        if waiting:
            self.waiting = []
            self.sent += len(waiting)
            for session in waiting:
                session.flush()
        self.reader = None


class Hub:
    """
    What every connection's session shares, whatever its front end: the
    router and accounts, the limits and the connection count, the outbox
    and the clock.

    @ivar require_tls_for_login: refuse passwords over plain TCP, except
        from this machine.
    @ivar server_password: the password every connection must give
        (L{ServerPassword}) before anything but C{/help}, C{/ping},
        C{/limits} and C{/quit}; None: none needed.
    @ivar errors: how many times each kind of L{ChatError} has been sent to
        a client since the start, for monitoring.
    """

    def __init__(
        self,
        router: Router,
        accounts: Accounts,
        clock: IReactorTime,
        limits: Limits | None = None,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        require_tls_for_login: bool = False,
        server_password: str | None = None,
    ) -> None:
        self.router = router
        self.accounts = accounts
        self.clock = clock
        self.limits = limits or Limits()
        self.max_line_length = max_line_length
        self.require_tls_for_login = require_tls_for_login
        self.server_password = server_password
        self.connections = ConnectionCounter(self.limits)
        self.outbox = Outbox()
        self.deadlines = Deadlines(clock)
        self.seconds = clock.seconds
        self.errors: Counter[type[ChatError]] = Counter()


@implementer(IParticipant)
class ConnectionSession:
    """
    One client connection's session: what it may do, and in what order.

    Lines are carried out one at a time, in order: while one waits for
    storage (a login, a message kept for later), later lines queue and the
    front end stops reading, so replies come in the order of the requests.

    The hub's L{Limits} apply: a token bucket against floods, the
    connection counts, a timeout for choosing a nickname and then for being
    silent, and a cap on what may wait to be sent to a client that does not
    read (the front end watches its buffer and calls L{not_reading}).
    """

    _log = Logger()

    # Slots keep an idle connection small.
    __slots__ = (
        "_abort_later",
        "_admitted",
        "_awaiting_nick",
        "_bucket",
        "_deadline",
        "_format",
        "_handlers",
        "_heard",
        "_held",
        "_hub",
        "_link",
        "_outbox",
        "_peer",
        "_presence",
        "_queued",
        "_router",
        "_waiting",
        "closing",
    )

    def __init__(self, hub: Hub, link: ILink, wire: IWireFormat, peer: Peer) -> None:
        """
        @param link: the front end's connection, to write to and close.
        @param wire: how the front end's lines parse into commands, and
            how events and errors are put on its wire.
        @param peer: where the connection comes from.
        """
        self._hub = hub
        # Kept at hand, as the hot path reaches them for every line and delivery.
        self._router = hub.router
        self._outbox = hub.outbox
        self._link = link
        self._format = wire
        self._peer = peer
        # When the timeout counts from: the client's last read once it has a
        # nickname, the connection's start until then.
        self._heard = 0.0
        self._deadline: Entry | None = None
        self._held: list[bytes] | None = None
        self._bucket: TokenBucket | None = None
        self._admitted = False
        self._abort_later: IDelayedCall | None = None
        self._awaiting_nick = True
        self._presence: Presence | None = None
        # What carries out each command: all of them, or until the server
        # password is given, only what needs none.
        self._handlers = _HANDLERS if hub.server_password is None else _LOCKED_HANDLERS
        # The session has ended and the connection is closing: read nothing more.
        self.closing = False
        self._waiting = False
        # Lines waiting for an earlier one; made when first needed, as most
        # connections never need it and an empty deque takes half a kilobyte.
        self._queued: deque[bytes | ChatError] | None = None

    def open(self) -> bool:
        """
        Greet the client and start its session, if the connection limits allow.

        @return: whether it was admitted; if not, it was told why and is closing.
        """
        hub, peer = self._hub, self._peer
        refusal = hub.connections.admit(peer.host)
        if refusal is not None:
            self._log.info("refused {peer}: {reason}", peer=peer.shown, reason=refusal)
            hub.errors[type(refusal)] += 1
            hub.outbox.sent += 1
            self.closing = True
            self._link.write(self._format.encode_error(refusal))
            self._link.close()
            return False
        self._admitted = True
        limits = hub.limits
        if limits.flood_rate:
            self._bucket = TokenBucket(limits.flood_rate, limits.flood_burst, hub.clock)
        self._heard = hub.seconds()
        self._watch_deadline()
        self._presence = hub.router.connect(self, peer.shown)
        self._log.info("{peer} connected", peer=peer.shown)
        first = "register" if hub.server_password is None else _PASSWORD_FIRST
        self.deliver(Notice(f"connected from {peer.shown} — {first} with #yourname"))
        return True

    @property
    def frontend(self) -> str:
        """The name of the front end the connection came in on (L{ILink.frontend})."""
        name: str = self._link.frontend
        return name

    def connection_lost(self) -> None:
        """The connection is gone: leave every room and free the nickname."""
        if self._deadline is not None:
            self._hub.deadlines.cancel(self._deadline)
            self._deadline = None
        if self._abort_later is not None:
            self._abort_later.cancel()
            self._abort_later = None
        self._queued = None
        if self._admitted:
            self._admitted = False
            self._hub.connections.release(self._peer.host)
        presence = self._presence
        if presence is not None:
            nick = presence.nick or "no nickname"
            self._log.info("{peer} ({nick}) disconnected", peer=self._peer.shown, nick=nick)
            self._router.disconnect(presence)
            self._presence = None

    def due_at(self) -> float | None:
        """
        When the connection times out as it stands now (L{Deadlines}): so
        long after it started without a nickname, or after its last read
        with one; None for no timeout.
        """
        limits = self._hub.limits
        timeout = limits.register_timeout if self._awaiting_nick else limits.idle_timeout
        if not timeout or self.closing:
            return None
        return self._heard + timeout

    def timed_out(self) -> None:
        """No nickname in time, or silent for too long (L{Deadlines}): say so and close."""
        self._deadline = None
        limits = self._hub.limits
        if self._awaiting_nick:
            reason = f"no nickname after {limits.register_timeout:g} s"
        else:
            reason = f"nothing received for {limits.idle_timeout:g} s"
        self._say_goodbye(f"{reason}; closing")

    def lines_received(self, lines: list[bytes]) -> None:
        """
        The client sent something (it is not idle), ending these complete
        lines, without their line endings (perhaps none): carry them out in
        order, holding what is written meanwhile (L{Outbox}).
        """
        if not self._awaiting_nick:
            self._heard = self._hub.seconds()
        if not lines:
            return
        outbox = self._outbox
        outbox.received += len(lines)
        # One line has nothing to gather into fewer writes: what it causes is
        # written at once (the common case: a user sends a line at a time).
        outbox.collecting = len(lines) > 1
        outbox.reader = self
        try:
            limit = self._hub.max_line_length
            bucket = self._bucket
            for line in lines:
                if self.closing:
                    return
                if bucket is not None and not self._within_flood_limit(bucket, line):
                    continue
                # _take spelled out for the common case: this runs for every line.
                if len(line) > limit or self._waiting:
                    self._take(LineTooLong(limit) if len(line) > limit else line)
                else:
                    self.line_received(line)
        finally:
            outbox.flush()

    def line_too_long(self, start: bytes) -> None:
        """
        The front end is discarding a line past the length limit, from its
        C{start}: it counts as a line, once, and is refused.
        """
        self._outbox.received += 1
        bucket = self._bucket
        if bucket is None or self._within_flood_limit(bucket, start):
            self._take(LineTooLong(self._hub.max_line_length))

    def _take(self, item: bytes | ChatError) -> None:
        """Carry out a line or answer an error now, or after the line being waited for."""
        if self._waiting:
            if self._queued is None:
                self._queued = deque()
            self._queued.append(item)
        elif isinstance(item, bytes):
            self.line_received(item)
        else:
            self.reply_error(item)

    def _within_flood_limit(self, bucket: TokenBucket, line: bytes) -> bool:
        """Take a token for C{line}; without one, refuse the line and say which, and why."""
        if bucket.take():
            return True
        limits = self._hub.limits
        # Answered in turn, after the lines before it that wait for storage.
        self._take(Flooding(limits.flood_rate, limits.flood_burst, self._format.quote(line)))
        return False

    def _check_nick(self) -> None:
        """Once the client has a nickname, the idle timeout replaces the nickname timeout."""
        if self._presence is not None and self._presence.nick is not None:
            self._awaiting_nick = False
            self._heard = self._hub.seconds()
            self._watch_deadline()

    def _watch_deadline(self) -> None:
        """Have the hub's L{Deadlines} watch the connection, in time for its deadline."""
        due, entry = self.due_at(), self._deadline
        if entry is not None and (due is None or due < entry.at):
            self._hub.deadlines.cancel(entry)
            entry = self._deadline = None
        if entry is None and due is not None:
            self._deadline = self._hub.deadlines.watch(self, due)

    def line_received(self, line: bytes) -> None:
        """Carry out one line, answering any error."""
        try:
            command = self._format.parse(line)
            presence = self._presence
            if command is None or presence is None:  # blank, or closed while the line waited
                pending = None
            elif type(command) is SendDirect and self._handlers is _HANDLERS:
                # _send_direct spelled out: this is the hot path.
                pending = self._router.send_direct(
                    presence, command.to, command.text, command.action, command.notice
                )
            else:
                pending = self._handlers[type(command)](self, presence, command)
        except Exception:
            self._failed(Failure())
            return
        if pending is not None:
            self._wait_for(pending)
        if self._awaiting_nick:
            self._check_nick()

    def deliver(self, event: Event) -> None:
        """Send one event to the client (L{IParticipant})."""
        wire = self._format
        data = wire.last_encoding if event is wire.last_event else wire.encode(event)
        # _send spelled out: this runs for every recipient of every message.
        outbox = self._outbox
        if not outbox.collecting:
            outbox.sent += 1
            self._link.write(data)
        elif self._held is None:
            self._held = [data]
            outbox.waiting.append(self)
        else:
            self._held.append(data)

    def reply_error(self, error: ChatError) -> None:
        """Answer the client's request with an error (L{IParticipant})."""
        self._hub.errors[type(error)] += 1
        self._send(self._format.encode_error(error))

    def close(self, reason: str) -> None:
        """Tell the client why, then close the connection (L{IParticipant})."""
        self._presence = None  # The router has already let it go.
        self._say_goodbye(f"{reason}; closing")

    def not_reading(self, limit: int) -> None:
        """
        More than C{limit} bytes wait for this client: drop it, so its
        queue stops growing, and tell the client whose lines are being
        carried out that its message did not get through.
        """
        presence = self._presence
        if self.closing or presence is None:
            return
        nick = presence.nick or self._peer.shown
        self._log.warn(
            "dropping {peer} ({nick}): over {limit} bytes wait to be sent; it is not reading",
            peer=self._peer.shown,
            nick=nick,
            limit=limit,
        )
        self.closing = True
        if self._held:
            # Never to be written, though the outbox will count one (Outbox.sent).
            self._outbox.sent -= 1
        self._held = None
        self._presence = None
        router = self._router
        router.disconnect(presence)
        self._link.abort()
        reader = self._outbox.reader
        if reader is not None and reader is not self and reader._presence is not None:
            router.not_delivered(reader._presence, NotReading(nick))

    def flush(self) -> None:
        """Write what the L{Outbox} held for this client."""
        held, self._held = self._held, None
        if held:
            if len(held) == 1:
                self._link.write(held[0])
            else:
                # The outbox counts the first (Outbox.sent).
                self._outbox.sent += len(held) - 1
                self._link.write_all(held)

    def _send(self, data: bytes) -> None:
        """Write to the client: now, or with the rest of this chunk's output."""
        if not self._outbox.collecting:
            self._outbox.sent += 1
            self._link.write(data)
        elif self._held is None:
            self._held = [data]
            self._outbox.waiting.append(self)
        else:
            self._held.append(data)

    def _say_goodbye(self, notice: str | ChatError, reason: str | None = None) -> None:
        """
        Send a last notice (or error) and close, ignoring anything the client sends after.

        The session ends at once (the name is free, rooms are told), not when
        the connection is finally gone; a close that the client does not
        complete (TLS waits for its close message) is aborted after
        L{CLOSE_GRACE} seconds.

        @param reason: why the user quit, told to their rooms.
        """
        if isinstance(notice, ChatError):
            self.reply_error(notice)
        else:
            self.deliver(Notice(notice))
        self.flush()
        self.closing = True
        self._log.info("{peer}: {notice}", peer=self._peer.shown, notice=notice)
        presence, self._presence = self._presence, None
        if presence is not None:
            self._router.disconnect(presence, reason=reason)
        self._link.resume_reading()
        self._link.close()
        self._abort_later = self._hub.clock.callLater(CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        self._abort_later = None
        self._log.info("{peer} did not close; aborting", peer=self._peer.shown)
        self._link.abort()

    def _failed(self, failure: Failure) -> None:
        """Answer a request that failed: its own error, or a generic one for a bug."""
        error = failure.value
        if isinstance(error, ChatError):
            self.reply_error(error)
        else:
            self._log.failure("handling a line from {peer} failed", failure, peer=self._peer.shown)
            self.reply_error(InternalError())

    def _wait_for(self, pending: Deferred[None]) -> None:
        """Hold later lines, and stop reading, until C{pending} is done."""
        if pending.called:
            pending.addErrback(self._failed)
            return
        self._waiting = True
        self._link.pause_reading()
        pending.addErrback(self._failed).addBoth(self._resume)

    def _resume(self, _: object) -> None:
        self._waiting = False
        if self._awaiting_nick:
            self._check_nick()
        while self._queued and not self._waiting and not self.closing:
            self._take(self._queued.popleft())
        if not self._waiting:
            # Also when closing: a TLS close must read the peer's.
            self._link.resume_reading()

    def _send_room(self, presence: Presence, command: SendRoom) -> Deferred[None] | None:
        return self._router.send_room(
            presence, command.room, command.text, command.action, command.notice
        )

    def _check_password_channel(self) -> None:
        """
        @raise PasswordNeedsTLS: the server wants passwords only over TLS (or
            from this machine), and this connection is neither.
        """
        if self._hub.require_tls_for_login and not self._peer.secure:
            raise PasswordNeedsTLS()

    def _register(self, presence: Presence, command: Register) -> Deferred[None] | None:
        if command.user is not None or command.real_name is not None:
            self._router.set_client_info(presence, command.user, command.real_name)
        if command.password is None:
            return self._router.register(presence, command.nick)
        self._check_password_channel()
        return Deferred.fromCoroutine(
            self._hub.accounts.log_in(presence, command.nick, command.password, self._peer.host)
        )

    def _server_password(self, presence: Presence, command: ServerPassword) -> None:
        """
        Check the server password; given, every command is open. A wrong one
        closes the connection (after the error), so each guess costs one.
        """
        expected = self._hub.server_password
        if expected is not None and self._handlers is _LOCKED_HANDLERS:
            self._check_password_channel()
            try:
                self._hub.accounts.check_server_password(
                    command.password, expected, self._peer.host
                )
            except WrongServerPassword as error:
                self._say_goodbye(error)
                return
            self._handlers = _HANDLERS
        self.deliver(PasswordAccepted(expected is not None))

    def _password_first(self, presence: Presence, command: object) -> None:
        raise ServerPasswordRequired()

    def _create_account(self, presence: Presence, command: CreateAccount) -> Deferred[None]:
        self._check_password_channel()
        return Deferred.fromCoroutine(self._hub.accounts.create(presence, command.password))

    def _change_password(self, presence: Presence, command: ChangePassword) -> Deferred[None]:
        self._check_password_channel()
        return Deferred.fromCoroutine(
            self._hub.accounts.change_password(presence, command.old, command.new, self._peer.host)
        )

    def _join(self, presence: Presence, command: Join) -> Deferred[None] | None:
        return self._router.join(presence, command.room)

    def _leave(self, presence: Presence, command: Leave) -> Deferred[None] | None:
        return self._router.leave(presence, command.room, command.reason)

    def _history(self, presence: Presence, command: History) -> Deferred[None]:
        return self._router.history(presence, command.room, command.count)

    def _show_topic(self, presence: Presence, command: ShowTopic) -> None:
        self.deliver(self._router.topic(command.room, presence))

    def _set_topic(self, presence: Presence, command: SetTopic) -> Deferred[None] | None:
        return self._router.set_topic(presence, command.room, command.topic)

    def _set_operator(self, presence: Presence, command: SetOperator) -> Deferred[None] | None:
        return self._router.set_operator(presence, command.room, command.nick, command.operator)

    def _set_voice(self, presence: Presence, command: SetVoice) -> Deferred[None] | None:
        return self._router.set_voice(presence, command.room, command.nick, command.voiced)

    def _set_room_mode(self, presence: Presence, command: SetRoomMode) -> Deferred[None] | None:
        return self._router.set_room_mode(presence, command.room, command.mode, command.on)

    def _show_room_modes(self, presence: Presence, command: ShowRoomModes) -> None:
        self.deliver(self._router.room_modes(command.room, presence))

    def _kick(self, presence: Presence, command: Kick) -> Deferred[None] | None:
        return self._router.kick(presence, command.room, command.nick, command.reason)

    def _set_ban(self, presence: Presence, command: SetBan) -> Deferred[None] | None:
        return self._router.set_ban(presence, command.room, command.nick, command.banned)

    def _list_bans(self, presence: Presence, command: ListBans) -> None:
        self.deliver(self._router.bans(command.room, presence))

    def _list_rooms(self, presence: Presence, command: ListRooms) -> None:
        self.deliver(self._router.rooms(presence))

    def _who(self, presence: Presence, command: Who) -> None:
        self.deliver(self._router.who(command.room, command.details, presence))

    def _whois(self, presence: Presence, command: Whois) -> None:
        self.deliver(self._router.whois(command.nick, presence))

    def _set_away(self, presence: Presence, command: SetAway) -> Deferred[None] | None:
        return self._router.set_away(presence, command.message)

    def _show_counts(self, presence: Presence, command: ShowCounts) -> None:
        self.deliver(self._router.counts())

    def _help(self, presence: Presence, command: Help) -> None:
        for line in self._format.help_lines():
            self.deliver(Notice(line))

    def _ping(self, presence: Presence, command: Ping) -> None:
        self.deliver(Notice("pong"))

    def _show_limits(self, presence: Presence, command: ShowLimits) -> None:
        limits = self._hub.limits
        self.deliver(
            LimitsInfo(
                limits.flood_rate,
                limits.flood_burst,
                self._hub.max_line_length,
                limits.idle_timeout,
            )
        )

    def _quit(self, presence: Presence, command: Quit) -> None:
        self._say_goodbye("bye", command.reason)


# What carries out each kind of command, looked up by type: a match statement
# over class patterns costs several times more, and this runs for every line.
_HANDLERS: dict[type, Callable[[ConnectionSession, Presence, Any], Deferred[None] | None]] = {
    SendRoom: ConnectionSession._send_room,
    Register: ConnectionSession._register,
    CreateAccount: ConnectionSession._create_account,
    ChangePassword: ConnectionSession._change_password,
    Join: ConnectionSession._join,
    Leave: ConnectionSession._leave,
    History: ConnectionSession._history,
    ShowTopic: ConnectionSession._show_topic,
    SetTopic: ConnectionSession._set_topic,
    SetOperator: ConnectionSession._set_operator,
    Kick: ConnectionSession._kick,
    SetBan: ConnectionSession._set_ban,
    ListBans: ConnectionSession._list_bans,
    ListRooms: ConnectionSession._list_rooms,
    Who: ConnectionSession._who,
    Whois: ConnectionSession._whois,
    SetAway: ConnectionSession._set_away,
    Help: ConnectionSession._help,
    Ping: ConnectionSession._ping,
    ShowLimits: ConnectionSession._show_limits,
    Quit: ConnectionSession._quit,
    ShowCounts: ConnectionSession._show_counts,
    ServerPassword: ConnectionSession._server_password,
    SetVoice: ConnectionSession._set_voice,
    SetRoomMode: ConnectionSession._set_room_mode,
    ShowRoomModes: ConnectionSession._show_room_modes,
}

_PASSWORD_FIRST = "this server has a password: /pass PASSWORD first, then register"
"""What the greeting says to do first on a server with a password."""
_OPEN_BEFORE_PASSWORD = frozenset({ServerPassword, Help, Ping, ShowLimits, Quit})
# Until the server password is given (Hub.server_password), the rest is refused.
_LOCKED_HANDLERS: dict[
    type, Callable[[ConnectionSession, Presence, Any], Deferred[None] | None]
] = {
    command: handler if command in _OPEN_BEFORE_PASSWORD else ConnectionSession._password_first
    for command, handler in _HANDLERS.items()
}
# line_received sends a direct message itself, when the session is not locked.
_LOCKED_HANDLERS[SendDirect] = ConnectionSession._password_first
