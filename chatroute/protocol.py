"""
The line protocol's transport side: bytes to lines to router calls, events to bytes.

L{ChatProtocol} is the one place that catches L{ChatError}s and writes them
as C{! ...} lines.
"""

from twisted.internet.interfaces import IAddress, ITCPTransport, ITransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.errors import ChatError, InternalError, InvalidEncoding, LineTooLong
from chatroute.events import Event, Notice
from chatroute.interfaces import IParticipant
from chatroute.lines import (
    HELP,
    Help,
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


@implementer(IParticipant)
class ChatProtocol(LineReceiver):
    """
    One client connection speaking the line protocol.

    Lines may end in LF or CR LF; lines sent end in CR LF. A line longer than
    the limit is answered with an error and discarded up to its end; the
    connection stays open.
    """

    delimiter = b"\r\n"
    _log = Logger()

    def __init__(self, router: Router, encoder: WireEncoder, max_line_length: int) -> None:
        self._router = router
        self._encoder = encoder
        self.MAX_LENGTH = max_line_length
        self._buffer = b""
        self._discarding = False
        self._peer = "unknown"
        self._session: Session | None = None
        self._closing = False

    def connectionMade(self) -> None:
        """Greet the client and start its session."""
        transport = self.transport
        assert transport is not None, "connectionMade comes after makeConnection"
        self._out: ITransport = transport
        self._peer = describe_peer(transport.getPeer())
        if ITCPTransport.providedBy(transport):
            # Chat lines are small and latency matters more than packet count.
            transport.setTcpNoDelay(True)
        self._session = self._router.connect(self)
        self._log.info("{peer} connected", peer=self._peer)
        self.deliver(Notice(f"connected from {self._peer} — register with #yourname"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Leave every room and free the nickname."""
        if self._session is not None:
            self._log.info("{peer} ({nick}) disconnected", peer=self._peer, nick=self._session.nick)
            self._router.disconnect(self._session)
            self._session = None

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into lines at LF, dropping a CR before it.

        This replaces L{LineReceiver.dataReceived}, which would drop the
        connection on an over-long line, and which copies its buffer once per
        line.
        """
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
        limit = self.MAX_LENGTH
        for line in lines:
            if self._closing:
                return
            if line[-1:] == b"\r":
                line = line[:-1]
            if len(line) > limit:
                self.lineLengthExceeded(line)
            else:
                self.lineReceived(line)
        if len(self._buffer) > limit + 1:  # + 1 for a CR that may still come
            self._buffer = b""
            self._discarding = True
            self.lineLengthExceeded(b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse the over-long line but keep the connection."""
        self._reply_error(LineTooLong(self.MAX_LENGTH))

    def lineReceived(self, line: bytes) -> None:
        """Parse one line and carry it out, answering any error with C{! ...}."""
        try:
            try:
                text = line.decode()
            except UnicodeDecodeError:
                raise InvalidEncoding() from None
            self._dispatch(text)
        except ChatError as error:
            self._reply_error(error)
        except Exception:
            self._log.failure("handling a line from {peer} failed", peer=self._peer)
            self._reply_error(InternalError())

    def deliver(self, event: Event) -> None:
        """Send one event to the client (L{IParticipant})."""
        self._out.write(self._encoder.encode(event))

    def _reply_error(self, error: ChatError) -> None:
        self._out.write(f"! {error}\r\n".encode())

    def _dispatch(self, text: str) -> None:
        command = parse_line(text)
        router = self._router
        session = self._session
        assert session is not None, "lines arrive only while connected"
        match command:
            case SendDirect(to, message):
                router.send_direct(session, to, message)
            case SendRoom(room, message):
                router.send_room(session, room, message)
            case Register(nick):
                old = session.nick
                router.register(session, nick)
                if old != nick:
                    self._log.info("{peer} is {nick}", peer=self._peer, nick=nick)
            case Join(room):
                router.join(session, room)
            case Leave(room):
                router.leave(session, room)
            case ListRooms():
                self.deliver(router.rooms())
            case Who(room):
                self.deliver(router.who(room))
            case Help():
                for line in HELP:
                    self.deliver(Notice(line))
            case Quit():
                self.deliver(Notice("bye"))
                self._closing = True
                self._out.loseConnection()
            case None:
                pass


class ChatServerFactory(ServerFactory):
    """Builds a L{ChatProtocol} per connection, all sharing one L{Router}."""

    noisy = False

    def __init__(self, router: Router, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        self.router = router
        self.max_line_length = max_line_length
        self._encoder = WireEncoder()

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        """A new connection's protocol."""
        protocol = ChatProtocol(self.router, self._encoder, self.max_line_length)
        protocol.factory = self
        return protocol
