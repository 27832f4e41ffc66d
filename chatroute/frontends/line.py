"""
The line protocol on TCP and TLS: bytes to lines for a session, its output to bytes.

L{ChatProtocol} is a L{LineReceiver} that frames, takes out telnet commands,
writes and watches its send buffer; everything else a connection does is its
L{ConnectionSession}'s.
"""

from collections.abc import Sequence

from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IHandshakeListener,
    IPushProducer,
    ISSLTransport,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.internet.tcp import Connection
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.core.interfaces import ILink, IWireFormat
from chatroute.core.session import ConnectionSession, Hub, Peer, is_loopback
from chatroute.frontends.sending import (
    SendsAtOnce,
    SlowReaderGuard,
    direct_connection,
    limit_send_buffer,
)
from chatroute.frontends.syntax import LineFormat
from chatroute.frontends.telnet import TelnetFilter, mark_mangled


def describe_peer(address: IAddress) -> str:
    """C{host:port} for IP addresses (C{[host]:port} for IPv6), else the address's repr."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return repr(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_of(transport: ITransport) -> Peer:
    """Where the client of C{transport} is; secure if TLS or on this machine."""
    address = transport.getPeer()
    shown = describe_peer(address)
    host = str(getattr(address, "host", shown))
    return Peer(host, shown, ISSLTransport.providedBy(transport) or is_loopback(host))


@implementer(ILink, IHandshakeListener)
class ChatProtocol(SendsAtOnce, LineReceiver):
    """
    One client connection speaking the line protocol.

    Lines may end in LF or CR LF; lines sent end in CR LF. A line longer than
    the limit is answered with an error and discarded up to its end; the
    connection stays open.

    It keeps L{LineReceiver}'s contract: it sends with its C{delimiter},
    holds the unfinished line in its C{_buffer} (so C{clearLineBuffer}
    works), and calls L{lineLengthExceeded} with what it has of the
    over-long line. It splits lines itself (L{dataReceived}), at LF with an
    optional CR, because L{LineReceiver}'s splitting drops the connection on
    an over-long line and copies its buffer once per line.
    """

    delimiter = b"\r\n"

    frontend = "line"
    """The front end's name (L{ILink})."""

    telnet = True
    """Whether telnet commands are taken out of the stream (line protocol clients use telnet)."""

    expands = False
    """Whether L{expand} may turn a line into several (set by front ends that need it)."""

    # Slots keep an idle connection small: Twisted's attributes stay in the
    # instance dict, which stays under the size at which CPython stops
    # sharing the keys of instance dicts.
    __slots__ = (
        "_buffer",
        "_direct",
        "_discarding",
        "_guarded",
        "_hub",
        "_out",
        "_paused",
        "_session",
        "_telnet",
        "_wire",
    )

    def __init__(self, hub: Hub, wire: IWireFormat) -> None:
        self._hub = hub
        self._wire = wire
        self.MAX_LENGTH = hub.max_line_length
        self._guarded = False
        self._paused: IPushProducer | None = None
        self._buffer = b""
        self._discarding = False
        self._telnet: TelnetFilter | None = None
        self._session: ConnectionSession | None = None
        self._direct: Connection | None = None

    def connectionMade(self) -> None:
        """Start the connection's session, which greets the client if the limits allow."""
        transport = self.transport
        assert transport is not None, "connectionMade comes after makeConnection"
        self._out: ITransport = transport
        self._direct = direct_connection(transport)
        session = self._session = ConnectionSession(self._hub, self, self._wire, peer_of(transport))
        if not session.open():
            return
        if ITCPTransport.providedBy(transport):
            # Chat lines are small and latency matters more than packet count.
            transport.setTcpNoDelay(True)
        limit = self._hub.limits.max_send_buffer
        if limit:
            limit_send_buffer(transport, limit)
            if not ISSLTransport.providedBy(transport):
                self._watch_send_buffer()

    def handshakeCompleted(self) -> None:
        """
        TLS is up (L{IHandshakeListener}): watch the send buffer from now on.

        Before the handshake the TLS layer holds back every write and pauses
        its producer, which the guard would take for a client not reading.
        """
        session = self._session
        if self._hub.limits.max_send_buffer and session is not None and not session.closing:
            self._watch_send_buffer()

    def _watch_send_buffer(self) -> None:
        assert self._session is not None
        guard = SlowReaderGuard(self._session, self._hub.limits.max_send_buffer)
        IConsumer(self._out).registerProducer(guard, True)
        self._guarded = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The session ends: the user leaves every room and the nickname is free."""
        if self._session is not None:
            self._session.connection_lost()

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into lines at LF, dropping a CR before it, for the session.

        Telnet commands are taken out first (L{TelnetFilter}), and answered
        after the lines before them.
        """
        session = self._session
        if session is None or session.closing:
            return
        if self._telnet is not None or self._discarding or (b"\xff" in data and self.telnet):
            self._received_with_care(session, data)
            return
        # The common case, spelled out as it runs for every read: plain lines.
        session.lines_received(self._complete_lines(data))
        if len(self._buffer) > self.MAX_LENGTH + 1 and not session.closing:
            self._refuse_unfinished()

    def _received_with_care(self, session: ConnectionSession, data: bytes) -> None:
        """L{dataReceived} for data with telnet commands, or while discarding a long line."""
        telnet_answer = b""
        with_commands: Sequence[int] = ()
        if self.telnet and (self._telnet is not None or b"\xff" in data):
            if self._telnet is None:
                # Made at the first IAC, perhaps in the middle of a line.
                self._telnet = TelnetFilter(line_begun=bool(self._buffer))
            data, telnet_answer = self._telnet.feed(data)
            with_commands = self._telnet.lines_with_commands
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                data = b""
            else:
                data = data[end + 1 :]
                self._discarding = False
                with_commands = [index - 1 for index in with_commands if index > 0]
        lines = self._complete_lines(data)
        if with_commands:
            mark_mangled(lines, with_commands, self.MAX_LENGTH)
        if telnet_answer:
            # After the replies to the lines before the commands, before the
            # replies to a line they were in: telnet shows nothing from the
            # server until its timing mark is answered.
            split = min(with_commands, default=len(lines))
            session.lines_received(lines[:split])
            if not session.closing:
                self.write(telnet_answer)
            lines = lines[split:]
        if lines or not telnet_answer:
            session.lines_received(lines)
        if len(self._buffer) > self.MAX_LENGTH + 1 and not session.closing:  # + 1: a CR may come
            self._refuse_unfinished()

    def _complete_lines(self, data: bytes) -> list[bytes]:
        """The lines that C{data} completes, without their endings; keep the unfinished rest."""
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        if b"\r" in data:
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        if self.expands and lines:
            lines = self.expand(lines)
        return lines

    def _refuse_unfinished(self) -> None:
        """The unfinished line is past the limit: refuse it now and discard it up to its end."""
        start, self._buffer = self._buffer, b""
        self._discarding = True
        self.lineLengthExceeded(start)

    def expand(self, lines: list[bytes]) -> list[bytes]:
        """
        The lines to carry out for these complete lines (when L{expands}):
        a front end whose one line may ask for several commands splits it
        here, so that each is carried out, and counted, as a line.
        """
        return lines

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A line grew past the limit before its end came: it is refused now and
        discarded up to its end; the connection stays open.

        @param line: the start of the line, as far as it has come.
        """
        assert self._session is not None
        self._session.line_too_long(line)

    def lineReceived(self, line: bytes) -> None:
        """One line, without its ending, for the session (as L{dataReceived} gives them)."""
        assert self._session is not None
        self._session.lines_received([line])

    def write_all(self, items: list[bytes]) -> None:
        """Send C{items} in one write (L{ILink})."""
        self.write(b"".join(items))

    def pause_reading(self) -> None:
        """Stop reading from the socket (L{ILink})."""
        self._paused = IPushProducer(self._out, None)
        if self._paused is not None:
            self._paused.pauseProducing()

    def resume_reading(self) -> None:
        """Undo L{pause_reading} (L{ILink})."""
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.resumeProducing()

    def close(self) -> None:
        """
        Close once the queue is sent, no longer watching it (L{ILink}).

        On plain TCP the close lingers: once the queue is sent, only the
        sending side is shut, so the client reads every last line and then
        the end, while what it still sends is read and dropped until it
        closes its side (or the session aborts the connection after
        L{chatroute.core.session.CLOSE_GRACE}). A socket closed at once
        would answer the client's next bytes with a reset, which fails its
        next write and may discard the last lines before the client reads
        them: an IRC client still sending USER after a wrong PASS would never
        see why it was refused. TLS lingers by itself: its close waits for
        the client's.
        """
        if self._guarded:
            self._guarded = False
            IConsumer(self._out).unregisterProducer()
        out = self._out
        if ITCPTransport.providedBy(out) and not ISSLTransport.providedBy(out):
            out.loseWriteConnection()
        else:
            out.loseConnection()

    def abort(self) -> None:
        """Close at once, dropping what waits to be sent (L{ILink})."""
        abort = getattr(self._out, "abortConnection", self._out.loseConnection)
        abort()


class ChatServerFactory(ServerFactory):
    """Builds a L{ChatProtocol} per connection, all sessions of one L{Hub}."""

    noisy = False

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.wire = LineFormat()

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        """A new connection's protocol."""
        protocol = ChatProtocol(self.hub, self.wire)
        protocol.factory = self
        return protocol
