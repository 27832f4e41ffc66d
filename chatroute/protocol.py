"""
The line protocol's transport side: bytes to lines to router calls, events to bytes.

L{ChatProtocol} is the one place that catches L{ChatError}s and writes them
as C{! ...} lines.
"""

from collections import deque
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.accounts import Accounts
from chatroute.errors import (
    ChatError,
    Flooding,
    InternalError,
    InvalidEncoding,
    LineTooLong,
    NotReading,
    PasswordNeedsTLS,
    TelnetMangled,
)
from chatroute.events import Event, Notice
from chatroute.interfaces import IParticipant
from chatroute.limits import ConnectionCounter, Limits, TokenBucket
from chatroute.lines import (
    HELP,
    ChangePassword,
    CreateAccount,
    Help,
    History,
    Join,
    Leave,
    ListRooms,
    Ping,
    Quit,
    Register,
    SendDirect,
    SendRoom,
    Who,
    format_event,
    parse_line,
)
from chatroute.router import Router, Session
from chatroute.sending import sender
from chatroute.telnet import TelnetFilter

DEFAULT_MAX_LINE_LENGTH = 4096
CLOSE_GRACE = 10.0
"""Seconds a client gets to complete a close the server started, before it is aborted."""


def describe_peer(address: IAddress) -> str:
    """C{host:port} for IP addresses (C{[host]:port} for IPv6), else the address's repr."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return repr(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TelnetMangledLine(bytes):
    """
    A line telnet commands were taken out of and that is not UTF-8: the
    client's telnet turned bytes of its non-ASCII characters into commands.
    """

    __slots__ = ()


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


class WireEncoder:
    """
    Turns events into wire bytes.

    It remembers the last event it encoded, so a room message fanned out to
    every member is formatted and encoded once, not once per member.
    """

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event: Event | None = None
        self._data = b""

    def encode(self, event: Event) -> bytes:
        """The event as one line of UTF-8 ending in CR LF."""
        if event is not self._event:
            self._data = (format_event(event) + "\r\n").encode()
            self._event = event
        return self._data


class Outbox:
    """
    Holds what is written to clients while a chunk of lines is carried out,
    then writes it, one write per client.

    A chunk read from one client often holds many lines for the same
    recipient (a burst of direct messages, several room messages); this
    turns them into one write and one system call for that recipient.
    """

    __slots__ = ("_waiting", "collecting", "reader")

    def __init__(self) -> None:
        self.collecting = False
        self.reader: ChatProtocol | None = None
        self._waiting: list[ChatProtocol] = []

    def collect(self, reader: "ChatProtocol") -> None:
        """Hold what is written from now until L{flush}, while C{reader}'s lines are carried out."""
        self.collecting = True
        self.reader = reader

    def not_delivered(self, recipient: "ChatProtocol", nick: str) -> None:
        """C{recipient} was dropped for not reading: tell the client whose lines caused it."""
        reader = self.reader
        if reader is not None and reader is not recipient:
            reader.reply_error(NotReading(nick))

    def hold(self, protocol: "ChatProtocol") -> None:
        """C{protocol} has data held until L{flush}."""
        self._waiting.append(protocol)

    def flush(self) -> None:
        """Write everything held, and stop holding."""
        self.collecting = False
        waiting, self._waiting = self._waiting, []
        for protocol in waiting:
            protocol.flush()
        self.reader = None


@implementer(IPushProducer)
class _SlowReaderGuard:
    """
    Registered with a client's transport so that Twisted tells us when more
    than the send-buffer limit waits to be sent to that client.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: "ChatProtocol") -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        """The transport's buffer is over the limit: the client is not reading."""
        self._protocol.not_reading()

    def resumeProducing(self) -> None:
        """The buffer drained; nothing to do."""

    def stopProducing(self) -> None:
        """The connection is closing; nothing to do."""


@implementer(IParticipant, IHandshakeListener)
class ChatProtocol(LineReceiver, TimeoutMixin):
    """
    One client connection speaking the line protocol.

    Lines may end in LF or CR LF; lines sent end in CR LF. A line longer than
    the limit is answered with an error and discarded up to its end; the
    connection stays open.

    Lines are carried out one at a time, in order: while one waits for
    storage (a login, a message kept for later), later lines queue and the
    connection stops reading, so replies come in the order of the requests.

    The factory's L{Limits} apply: a token bucket against floods, the
    connection counts, a timeout for choosing a nickname and then for being
    silent, and a cap on what may wait to be sent to a client that does not
    read.
    """

    delimiter = b"\r\n"
    _log = Logger()

    # Slots keep an idle connection small: Twisted's attributes stay in the
    # instance dict, which stays under the size at which CPython stops
    # sharing the keys of instance dicts.
    __slots__ = (
        "_abort_later",
        "_accounts",
        "_admitted",
        "_awaiting_nick",
        "_bucket",
        "_buffer",
        "_closing",
        "_discarding",
        "_encoder",
        "_guarded",
        "_held",
        "_host",
        "_limits",
        "_out",
        "_outbox",
        "_paused",
        "_peer",
        "_queued",
        "_router",
        "_secure",
        "_session",
        "_telnet",
        "_waiting",
        "_write",
    )

    def __init__(self, factory: "ChatServerFactory") -> None:
        self.factory = factory
        self._router = factory.router
        self._accounts = factory.accounts
        self._encoder = factory.encoder
        self._outbox = factory.outbox
        self._limits = factory.limits
        self._held: list[bytes] | None = None
        self.MAX_LENGTH = factory.max_line_length
        self.callLater = factory.clock.callLater  # type: ignore[method-assign,assignment]
        self._bucket: TokenBucket | None = None
        self._admitted = False
        self._guarded = False
        self._paused: IPushProducer | None = None
        self._abort_later: IDelayedCall | None = None
        self._awaiting_nick = True
        self._secure = False
        self._buffer = b""
        self._discarding = False
        self._peer = "unknown"
        self._host = "unknown"
        self._session: Session | None = None
        self._closing = False
        self._waiting = False
        # Lines waiting for an earlier one; made when first needed, as most
        # connections never need it and an empty deque takes half a kilobyte.
        self._queued: deque[bytes] | None = None
        self._telnet: TelnetFilter | None = None

    def connectionMade(self) -> None:
        """Greet the client and start its session, if the connection limits allow."""
        transport = self.transport
        assert transport is not None, "connectionMade comes after makeConnection"
        self._out: ITransport = transport
        self._write = sender(transport)
        address = transport.getPeer()
        self._peer = describe_peer(address)
        self._host = str(getattr(address, "host", self._peer))
        refusal = self.factory.connections.admit(self._host)
        if refusal is not None:
            self._log.info("refused {peer}: {reason}", peer=self._peer, reason=refusal)
            self._closing = True
            self._write(f"! {refusal}; closing\r\n".encode())
            transport.loseConnection()
            return
        self._admitted = True
        self._secure = ISSLTransport.providedBy(transport) or _is_loopback(self._host)
        if ITCPTransport.providedBy(transport):
            # Chat lines are small and latency matters more than packet count.
            transport.setTcpNoDelay(True)
        self._apply_limits(transport)
        self._session = self._router.connect(self, self._peer)
        self._log.info("{peer} connected", peer=self._peer)
        self.deliver(Notice(f"connected from {self._peer} — register with #yourname"))

    def _apply_limits(self, transport: ITransport) -> None:
        limits = self._limits
        if limits.flood_rate:
            self._bucket = TokenBucket(limits.flood_rate, limits.flood_burst, self.factory.clock)
        self.setTimeout(limits.register_timeout or None)
        if limits.max_send_buffer:
            # Under TLS the bytes wait in the TCP connection the TLS layer writes to.
            socket_transport: Any = getattr(transport, "transport", None) or transport
            socket_transport.bufferSize = limits.max_send_buffer
            if not ISSLTransport.providedBy(transport):
                self._watch_send_buffer()

    def handshakeCompleted(self) -> None:
        """
        TLS is up (L{IHandshakeListener}): watch the send buffer from now on.

        Before the handshake the TLS layer holds back every write and pauses
        its producer, which the guard would take for a client not reading.
        """
        if self._limits.max_send_buffer and not self._closing:
            self._watch_send_buffer()

    def _watch_send_buffer(self) -> None:
        IConsumer(self._out).registerProducer(_SlowReaderGuard(self), True)
        self._guarded = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Leave every room and free the nickname."""
        self.setTimeout(None)
        if self._abort_later is not None:
            self._abort_later.cancel()
            self._abort_later = None
        self._queued = None
        if self._admitted:
            self._admitted = False
            self.factory.connections.release(self._host)
        if self._session is not None:
            nick = self._session.nick or "no nickname"
            self._log.info("{peer} ({nick}) disconnected", peer=self._peer, nick=nick)
            self._router.disconnect(self._session)
            self._session = None

    def timeoutConnection(self) -> None:
        """No nickname in time, or silent for too long (L{TimeoutMixin}): say so and close."""
        if self._awaiting_nick:
            reason = f"no nickname after {self._limits.register_timeout:g} s"
        else:
            reason = f"nothing received for {self._limits.idle_timeout:g} s"
        self._say_goodbye(f"{reason}; closing")

    def not_reading(self) -> None:
        """
        More than the send-buffer limit waits for this client: drop it, so
        its queue stops growing, and tell the client whose lines are being
        carried out that its message did not get through.
        """
        session = self._session
        if self._closing or session is None:
            return
        nick = session.nick or self._peer
        self._log.warn(
            "dropping {peer} ({nick}): over {limit} bytes wait to be sent; it is not reading",
            peer=self._peer,
            nick=nick,
            limit=self._limits.max_send_buffer,
        )
        self._closing = True
        self._held = None
        self._session = None
        self._router.disconnect(session)
        # Abort rather than close: a close would wait for the queue to drain.
        abort = getattr(self._out, "abortConnection", self._out.loseConnection)
        abort()
        self._outbox.not_delivered(self, nick)

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into lines at LF, dropping a CR before it.

        This replaces L{LineReceiver.dataReceived}, which would drop the
        connection on an over-long line, and which copies its buffer once per
        line. Telnet commands are taken out first (L{TelnetFilter}).
        """
        if not self._awaiting_nick:
            self.resetTimeout()
        telnet_answer = b""
        with_commands: list[int] = []
        if self._telnet is not None or b"\xff" in data:
            data, telnet_answer = self._split_telnet(data)
            with_commands = self._telnet.lines_with_commands if self._telnet else []
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                data = b""
            else:
                data = data[end + 1 :]
                self._discarding = False
                with_commands = [index - 1 for index in with_commands if index > 0]
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        if with_commands:
            self._mark_mangled(lines, with_commands)
        outbox = self._outbox
        outbox.collect(self)
        try:
            self._carry_out(lines)
            if telnet_answer and not self._closing:
                # After the lines before it: what a timing mark asks for.
                self._send(telnet_answer)
        finally:
            outbox.flush()

    def _carry_out(self, lines: list[bytes]) -> None:
        limit = self.MAX_LENGTH
        bucket = self._bucket
        for line in lines:
            if self._closing:
                return
            if bucket is not None and not self._within_flood_limit(bucket):
                continue
            if line[-1:] == b"\r":
                line = line[:-1]
            if len(line) > limit:
                self.lineLengthExceeded(line)
            elif self._waiting:
                if self._queued is None:
                    self._queued = deque()
                self._queued.append(line)
            else:
                self.lineReceived(line)
        if len(self._buffer) > limit + 1 and not self._closing:  # + 1: a CR may still come
            # Refused now, before its end arrives: it counts as a line, once.
            self._buffer = b""
            self._discarding = True
            if bucket is None or self._within_flood_limit(bucket):
                self.lineLengthExceeded(b"")

    def _within_flood_limit(self, bucket: TokenBucket) -> bool:
        """Take a token for a line; without one, refuse the line and say why."""
        if bucket.take():
            return True
        self.reply_error(Flooding(self._limits.flood_rate, self._limits.flood_burst))
        return False

    def _check_nick(self) -> None:
        """Once the client has a nickname, the idle timeout replaces the nickname timeout."""
        if self._session is not None and self._session.nick is not None:
            self._awaiting_nick = False
            self.setTimeout(self._limits.idle_timeout or None)

    def _split_telnet(self, data: bytes) -> tuple[bytes, bytes]:
        """The data without telnet commands, and the answer to them."""
        if self._telnet is None:
            # Created at the first IAC, perhaps in the middle of a line.
            self._telnet = TelnetFilter(line_begun=bool(self._buffer))
        return self._telnet.feed(data)

    def _mark_mangled(self, lines: list[bytes], with_commands: list[int]) -> None:
        """
        Mark the lines that telnet commands were taken out of and that are not
        UTF-8 as L{TelnetMangledLine}, so their error says telnet broke them.
        """
        for index in with_commands:
            line = lines[index].removesuffix(b"\r")
            if len(line) <= self.MAX_LENGTH and not _is_utf8(line):
                lines[index] = TelnetMangledLine(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse the over-long line but keep the connection."""
        self.reply_error(LineTooLong(self.MAX_LENGTH))

    def lineReceived(self, line: bytes) -> None:
        """Carry out one line, answering any error with C{! ...}."""
        try:
            try:
                text = line.decode()
            except UnicodeDecodeError:
                if isinstance(line, TelnetMangledLine):
                    raise TelnetMangled() from None
                raise InvalidEncoding() from None
            pending = self._carry_out_line(text)
        except Exception:
            self._failed(Failure())
            return
        if pending is not None:
            self._wait_for(pending)
        if self._awaiting_nick:
            self._check_nick()

    def deliver(self, event: Event) -> None:
        """Send one event to the client (L{IParticipant})."""
        self._send(self._encoder.encode(event))

    def close(self, reason: str) -> None:
        """Tell the client why, then close the connection (L{IParticipant})."""
        self._session = None  # The router has already let it go.
        self._say_goodbye(f"{reason}; closing")

    def flush(self) -> None:
        """Write what the L{Outbox} held for this client."""
        held, self._held = self._held, None
        if held:
            self._write(b"".join(held))

    def _send(self, data: bytes) -> None:
        """Write to the client: now, or with the rest of this chunk's output."""
        if not self._outbox.collecting:
            self._write(data)
        elif self._held is None:
            self._held = [data]
            self._outbox.hold(self)
        else:
            self._held.append(data)

    def _say_goodbye(self, notice: str) -> None:
        """
        Send a last notice and close, ignoring anything the client sends after.

        The session ends at once (the name is free, rooms are told), not when
        the connection is finally gone; a close that the client does not
        complete (TLS waits for its close message) is aborted after
        L{CLOSE_GRACE} seconds.
        """
        self.deliver(Notice(notice))
        self.flush()
        self._closing = True
        self._log.info("{peer}: {notice}", peer=self._peer, notice=notice)
        session, self._session = self._session, None
        if session is not None:
            self._router.disconnect(session)
        if self._guarded:
            IConsumer(self._out).unregisterProducer()
        self._read_again()
        self._out.loseConnection()
        self._abort_later = self.callLater(CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        self._abort_later = None
        abort = getattr(self._out, "abortConnection", None)
        if abort is not None:
            self._log.info("{peer} did not close; aborting", peer=self._peer)
            abort()

    def _failed(self, failure: Failure) -> None:
        """Answer a request that failed: its own error, or a generic one for a bug."""
        error = failure.value
        if isinstance(error, ChatError):
            self.reply_error(error)
        else:
            self._log.failure("handling a line from {peer} failed", failure, peer=self._peer)
            self.reply_error(InternalError())

    def reply_error(self, error: ChatError) -> None:
        """Answer the client's line with C{! error}."""
        self._send(f"! {error}\r\n".encode())

    def _wait_for(self, pending: Deferred[None]) -> None:
        """Hold later lines, and stop reading, until C{pending} is done."""
        if pending.called:
            pending.addErrback(self._failed)
            return
        self._waiting = True
        self._paused = IPushProducer(self._out, None)
        if self._paused is not None:
            self._paused.pauseProducing()
        pending.addErrback(self._failed).addBoth(self._resume)

    def _resume(self, _: object) -> None:
        self._waiting = False
        if self._awaiting_nick:
            self._check_nick()
        while self._queued and not self._waiting and not self._closing:
            self.lineReceived(self._queued.popleft())
        if not self._waiting:
            self._read_again()

    def _read_again(self) -> None:
        """Undo L{_wait_for}'s pause: also when closing, as a TLS close must read the peer's."""
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.resumeProducing()

    def _carry_out_line(self, text: str) -> Deferred[None] | None:
        """Carry out one line; a Deferred if it finishes later."""
        command = parse_line(text)
        session = self._session
        if command is None or session is None:  # blank, or closed while the line waited
            return None
        return _HANDLERS[type(command)](self, session, command)

    def _send_direct(self, session: Session, command: SendDirect) -> Deferred[None] | None:
        return self._router.send_direct(session, command.to, command.text)

    def _send_room(self, session: Session, command: SendRoom) -> None:
        self._router.send_room(session, command.room, command.text)

    def _check_password_channel(self) -> None:
        """
        @raise PasswordNeedsTLS: the server wants passwords only over TLS (or
            from this machine), and this connection is neither.
        """
        if self.factory.require_tls_for_login and not self._secure:
            raise PasswordNeedsTLS()

    def _register(self, session: Session, command: Register) -> Deferred[None] | None:
        if command.password is None:
            return self._router.register(session, command.nick)
        self._check_password_channel()
        return Deferred.fromCoroutine(
            self._accounts.log_in(session, command.nick, command.password, self._host)
        )

    def _create_account(self, session: Session, command: CreateAccount) -> Deferred[None]:
        self._check_password_channel()
        return Deferred.fromCoroutine(self._accounts.create(session, command.password))

    def _change_password(self, session: Session, command: ChangePassword) -> Deferred[None]:
        self._check_password_channel()
        return Deferred.fromCoroutine(
            self._accounts.change_password(session, command.old, command.new, self._host)
        )

    def _join(self, session: Session, command: Join) -> Deferred[None] | None:
        return self._router.join(session, command.room)

    def _leave(self, session: Session, command: Leave) -> None:
        self._router.leave(session, command.room)

    def _history(self, session: Session, command: History) -> Deferred[None]:
        return self._router.history(session, command.room, command.count)

    def _list_rooms(self, session: Session, command: ListRooms) -> None:
        self.deliver(self._router.rooms())

    def _who(self, session: Session, command: Who) -> None:
        self.deliver(self._router.who(command.room))

    def _help(self, session: Session, command: Help) -> None:
        for line in HELP:
            self.deliver(Notice(line))

    def _ping(self, session: Session, command: Ping) -> None:
        self.deliver(Notice("pong"))

    def _quit(self, session: Session, command: Quit) -> None:
        self._say_goodbye("bye")


# What carries out each kind of command, looked up by type: a match statement
# over class patterns costs several times more, and this runs for every line.
_HANDLERS: dict[type, Callable[[ChatProtocol, Session, Any], Deferred[None] | None]] = {
    SendDirect: ChatProtocol._send_direct,
    SendRoom: ChatProtocol._send_room,
    Register: ChatProtocol._register,
    CreateAccount: ChatProtocol._create_account,
    ChangePassword: ChatProtocol._change_password,
    Join: ChatProtocol._join,
    Leave: ChatProtocol._leave,
    History: ChatProtocol._history,
    ListRooms: ChatProtocol._list_rooms,
    Who: ChatProtocol._who,
    Help: ChatProtocol._help,
    Ping: ChatProtocol._ping,
    Quit: ChatProtocol._quit,
}


def _is_loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class ChatServerFactory(ServerFactory):
    """
    Builds a L{ChatProtocol} per connection; holds what they share: the
    router and accounts, the limits and connection counts, the encoder and
    outbox, and the clock.

    @ivar require_tls_for_login: refuse passwords over plain TCP, except
        from this machine.
    """

    noisy = False

    def __init__(
        self,
        router: Router,
        accounts: Accounts,
        clock: IReactorTime,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        limits: Limits | None = None,
        require_tls_for_login: bool = False,
    ) -> None:
        self.router = router
        self.accounts = accounts
        self.clock = clock
        self.max_line_length = max_line_length
        self.limits = limits or Limits()
        self.require_tls_for_login = require_tls_for_login
        self.connections = ConnectionCounter(self.limits)
        self.encoder = WireEncoder()
        self.outbox = Outbox()

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        """A new connection's protocol."""
        return ChatProtocol(self)
