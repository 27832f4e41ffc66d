"""
The line protocol's transport side: bytes to lines to router calls, events to bytes.

L{ChatProtocol} is the one place that catches L{ChatError}s and writes them
as C{! ...} lines.
"""

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IPushProducer, ITCPTransport, ITransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.accounts import Accounts
from chatroute.errors import ChatError, InternalError, InvalidEncoding, LineTooLong
from chatroute.events import Event, Notice
from chatroute.interfaces import IParticipant
from chatroute.lines import (
    HELP,
    ChangePassword,
    CreateAccount,
    Help,
    History,
    Join,
    Leave,
    ListRooms,
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


def describe_peer(address: IAddress) -> str:
    """C{host:port} for IP addresses (C{[host]:port} for IPv6), else the address's repr."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return repr(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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

    __slots__ = ("_waiting", "collecting")

    def __init__(self) -> None:
        self.collecting = False
        self._waiting: list[ChatProtocol] = []

    def hold(self, protocol: "ChatProtocol") -> None:
        """C{protocol} has data held until L{flush}."""
        self._waiting.append(protocol)

    def flush(self) -> None:
        """Write everything held, and stop holding."""
        self.collecting = False
        waiting, self._waiting = self._waiting, []
        for protocol in waiting:
            protocol.flush()


@implementer(IParticipant)
class ChatProtocol(LineReceiver):
    """
    One client connection speaking the line protocol.

    Lines may end in LF or CR LF; lines sent end in CR LF. A line longer than
    the limit is answered with an error and discarded up to its end; the
    connection stays open.

    Lines are carried out one at a time, in order: while one waits for
    storage (a login, a message kept for later), later lines queue and the
    connection stops reading, so replies come in the order of the requests.
    """

    delimiter = b"\r\n"
    _log = Logger()

    def __init__(
        self,
        router: Router,
        accounts: Accounts,
        encoder: WireEncoder,
        outbox: Outbox,
        max_line_length: int,
    ) -> None:
        self._router = router
        self._accounts = accounts
        self._encoder = encoder
        self._outbox = outbox
        self._held: list[bytes] | None = None
        self.MAX_LENGTH = max_line_length
        self._buffer = b""
        self._discarding = False
        self._peer = "unknown"
        self._host = "unknown"
        self._session: Session | None = None
        self._closing = False
        self._waiting = False
        self._queued: deque[bytes] = deque()
        self._telnet: TelnetFilter | None = None

    def connectionMade(self) -> None:
        """Greet the client and start its session."""
        transport = self.transport
        assert transport is not None, "connectionMade comes after makeConnection"
        self._out: ITransport = transport
        self._write = sender(transport)
        address = transport.getPeer()
        self._peer = describe_peer(address)
        self._host = str(getattr(address, "host", self._peer))
        if ITCPTransport.providedBy(transport):
            # Chat lines are small and latency matters more than packet count.
            transport.setTcpNoDelay(True)
        self._session = self._router.connect(self, self._peer)
        self._log.info("{peer} connected", peer=self._peer)
        self.deliver(Notice(f"connected from {self._peer} — register with #yourname"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Leave every room and free the nickname."""
        self._queued.clear()
        if self._session is not None:
            self._log.info("{peer} ({nick}) disconnected", peer=self._peer, nick=self._session.nick)
            self._router.disconnect(self._session)
            self._session = None

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into lines at LF, dropping a CR before it.

        This replaces L{LineReceiver.dataReceived}, which would drop the
        connection on an over-long line, and which copies its buffer once per
        line. Telnet commands are taken out first (L{TelnetFilter}).
        """
        if self._telnet is not None or b"\xff" in data:
            data = self._without_telnet(data)
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1 :]
            self._discarding = False
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        outbox = self._outbox
        outbox.collecting = True
        try:
            self._carry_out(lines)
        finally:
            outbox.flush()

    def _carry_out(self, lines: list[bytes]) -> None:
        limit = self.MAX_LENGTH
        for line in lines:
            if self._closing:
                return
            if line[-1:] == b"\r":
                line = line[:-1]
            if len(line) > limit:
                self.lineLengthExceeded(line)
            elif self._waiting:
                self._queued.append(line)
            else:
                self.lineReceived(line)
        if len(self._buffer) > limit + 1:  # + 1 for a CR that may still come
            self._buffer = b""
            self._discarding = True
            self.lineLengthExceeded(b"")

    def _without_telnet(self, data: bytes) -> bytes:
        if self._telnet is None:
            self._telnet = TelnetFilter()
        kept, answer = self._telnet.feed(data)
        if answer:
            self._send(answer)
        return kept

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse the over-long line but keep the connection."""
        self._reply_error(LineTooLong(self.MAX_LENGTH))

    def lineReceived(self, line: bytes) -> None:
        """Carry out one line, answering any error with C{! ...}."""
        try:
            try:
                text = line.decode()
            except UnicodeDecodeError:
                raise InvalidEncoding() from None
            pending = self._carry_out_line(text)
        except Exception:
            self._failed(Failure())
            return
        if pending is not None:
            self._wait_for(pending)

    def deliver(self, event: Event) -> None:
        """Send one event to the client (L{IParticipant})."""
        self._send(self._encoder.encode(event))

    def close(self, reason: str) -> None:
        """Tell the client why, then close the connection (L{IParticipant})."""
        self._log.info("closing {peer}: {reason}", peer=self._peer, reason=reason)
        self._session = None
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
        """Send a last notice and close, ignoring anything the client sends after."""
        self.deliver(Notice(notice))
        self.flush()
        self._closing = True
        self._out.loseConnection()

    def _failed(self, failure: Failure) -> None:
        """Answer a request that failed: its own error, or a generic one for a bug."""
        error = failure.value
        if isinstance(error, ChatError):
            self._reply_error(error)
        else:
            self._log.failure("handling a line from {peer} failed", failure, peer=self._peer)
            self._reply_error(InternalError())

    def _reply_error(self, error: ChatError) -> None:
        self._send(f"! {error}\r\n".encode())

    def _wait_for(self, pending: Deferred[None]) -> None:
        """Hold later lines, and stop reading, until C{pending} is done."""
        if pending.called:
            pending.addErrback(self._failed)
            return
        self._waiting = True
        producer = IPushProducer(self._out, None)
        if producer is not None:
            producer.pauseProducing()
        pending.addErrback(self._failed).addBoth(self._resume, producer)

    def _resume(self, _: object, producer: IPushProducer | None) -> None:
        self._waiting = False
        while self._queued and not self._waiting and not self._closing:
            self.lineReceived(self._queued.popleft())
        if not self._waiting and producer is not None and not self._closing:
            producer.resumeProducing()

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

    def _register(self, session: Session, command: Register) -> Deferred[None] | None:
        if command.password is None:
            return self._router.register(session, command.nick)
        return Deferred.fromCoroutine(
            self._accounts.log_in(session, command.nick, command.password, self._host)
        )

    def _create_account(self, session: Session, command: CreateAccount) -> Deferred[None]:
        return Deferred.fromCoroutine(self._accounts.create(session, command.password))

    def _change_password(self, session: Session, command: ChangePassword) -> Deferred[None]:
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
    Quit: ChatProtocol._quit,
}


class ChatServerFactory(ServerFactory):
    """Builds a L{ChatProtocol} per connection, all sharing one L{Router} and L{Accounts}."""

    noisy = False

    def __init__(
        self, router: Router, accounts: Accounts, max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    ) -> None:
        self.router = router
        self.accounts = accounts
        self.max_line_length = max_line_length
        self._encoder = WireEncoder()
        self._outbox = Outbox()

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        """A new connection's protocol."""
        protocol = ChatProtocol(
            self.router, self.accounts, self._encoder, self._outbox, self.max_line_length
        )
        protocol.factory = self
        return protocol
