"""
The web front end: the chat page, and the line protocol over a WebSocket.

C{--listen-web ENDPOINT} serves a L{ChatWebSite}: the page and its assets at
C{/}, and a WebSocket at C{/ws} that carries the line protocol, one line per
message in each direction (see docs/protocol.md). Each WebSocket connection
is a L{ConnectionSession} of the same L{Hub} as the TCP ones, so web, TCP and
terminal users share one chat and one set of limits.

The WebSocket is autobahn's, not C{twisted.web.websocket}: autobahn hands
over a message's data as it arrives, so a message over the line limit is
discarded as it comes (memory stays bounded, the client gets the same
C{! line too long} as on TCP and the connection stays), and it lets the
handshake be refused by C{Origin}; Twisted 26.10's buffers a whole message
without a limit and cannot refuse a handshake.
"""

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File
from zope.interface import implementer

from chatroute.core.interfaces import ILink
from chatroute.core.session import ConnectionSession, Hub
from chatroute.frontends.line import peer_of
from chatroute.frontends.sending import SlowReaderGuard, limit_send_buffer
from chatroute.frontends.syntax import LineFormat

PAGE = Path(str(files("chatroute.frontends").joinpath("page")))
"""The chat page's files: C{index.html}, its script and its stylesheet."""

_CRLF = b"\r\n"


def origin_of(url: str) -> str | None:
    """C{scheme://host[:port]} of C{url}, lower case, the default port left out; None if none."""
    parts = urlsplit(url.strip().lower())
    if not parts.scheme or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


@implementer(ILink)
class WebChatProtocol(WebSocketServerProtocol):
    """
    One WebSocket connection speaking the line protocol, a line per message.

    A message is one line; a line ending at its end (LF or CR LF) is
    allowed. Text and binary messages are both taken as UTF-8 lines, so
    that invalid UTF-8, control characters and over-long lines get the same
    C{! ...} errors as on TCP and the connection stays open.
    """

    _log = Logger()
    factory: "ChatWebSocketFactory"

    frontend = "web"
    """The front end's name (L{ILink})."""

    def __init__(self) -> None:
        super().__init__()
        self._session: ConnectionSession | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def onConnect(self, request: ConnectionRequest) -> None:
        """Refuse a page of another origin than the chat's own, or one allowed by the server."""
        origin = request.origin
        if origin in (None, "", "null") or self.factory.allows(
            origin, request.headers.get("host", "")
        ):
            return
        self._log.info("refused a WebSocket from {origin}", origin=origin)
        raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "this origin may not use the chat")

    def onOpen(self) -> None:
        """The WebSocket is up: start the connection's session, which greets the client."""
        transport = self.transport
        assert transport is not None
        hub = self.factory.hub
        session = self._session = ConnectionSession(
            hub, self, self.factory.wire, peer_of(transport)
        )
        if not session.open():
            return
        limit = hub.limits.max_send_buffer
        if limit:
            limit_send_buffer(transport, limit)
            consumer = IConsumer(transport)
            # The HTTP channel that carried the handshake is still registered.
            consumer.unregisterProducer()
            consumer.registerProducer(SlowReaderGuard(session, limit), True)

    def onMessageBegin(self, isBinary: bool) -> None:
        """A message starts: gather it, up to just past the line limit."""
        super().onMessageBegin(isBinary)
        self._parts = []
        self._size = 0

    def onMessageFrameData(self, payload: bytes) -> None:
        """Keep the message's data while it is within the limit (+ 2 for a line ending)."""
        room = self.factory.hub.max_line_length + 3 - self._size
        if room > 0:
            self._parts.append(payload[:room])
        self._size += len(payload)

    def onMessageFrameEnd(self) -> None:
        """Nothing to do: the data is kept as it comes (L{onMessageFrameData})."""

    def onMessageEnd(self) -> None:
        """A whole message: one line for the session."""
        session = self._session
        if session is None or session.closing:
            return
        line = b"".join(self._parts)
        self._parts = []
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(_CRLF) else line[:-1]
        if len(line) > self.factory.hub.max_line_length:
            session.line_too_long(line)
        else:
            session.lines_received([line])

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """The connection is gone: the session ends."""
        if self._session is not None:
            self._session.connection_lost()
            self._session = None

    def write(self, data: bytes) -> None:
        """Send each line of C{data} as a text message (L{ILink})."""
        if self.state != self.STATE_OPEN:
            return
        for line in data.split(_CRLF)[:-1]:
            self.sendMessage(line, isBinary=False)

    def write_all(self, items: list[bytes]) -> None:
        """Send each line of each item as a text message (L{ILink})."""
        for item in items:
            self.write(item)

    def pause_reading(self) -> None:
        """Stop reading from the socket (L{ILink})."""
        producer = IPushProducer(self.transport, None)
        if producer is not None:
            producer.pauseProducing()

    def resume_reading(self) -> None:
        """Read again (L{ILink})."""
        producer = IPushProducer(self.transport, None)
        if producer is not None:
            producer.resumeProducing()

    def close(self) -> None:
        """Close the WebSocket once what was sent is out (L{ILink})."""
        if self.state == self.STATE_OPEN:
            self.sendClose(1000)
        elif self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        """Close at once (L{ILink})."""
        transport = self.transport
        if transport is not None:
            abort = getattr(transport, "abortConnection", transport.loseConnection)
            abort()


class ChatWebSocketFactory(WebSocketServerFactory):
    """Builds a L{WebChatProtocol} per WebSocket, all sessions of one L{Hub}."""

    protocol = WebChatProtocol  # type: ignore[assignment]

    def __init__(self, hub: Hub, origins: Sequence[str] = ()) -> None:
        """
        @param origins: origins (C{https://chat.example.org}) whose pages may
            use the chat, besides the chat's own.
        """
        super().__init__()
        self.hub = hub
        self.wire = LineFormat()
        self._origins = {origin_of(origin) for origin in origins} - {None}
        self.setProtocolOptions(
            # Invalid UTF-8 is answered with the protocol's error, as on TCP.
            utf8validateIncoming=False,
            # Over-long messages are discarded as they come (WebChatProtocol).
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            openHandshakeTimeout=hub.limits.register_timeout or None,
        )

    def allows(self, origin: str, host: str) -> bool:
        """Whether a page from C{origin} may use the chat reached as C{host} (the Host header)."""
        found = origin_of(origin)
        if found is None:
            return False
        if found in self._origins:
            return True
        own = {origin_of(f"{scheme}://{host}") for scheme in ("http", "https")}
        return found in own


class ChatWebSite(Site):
    """The chat page at C{/} and the WebSocket at C{/ws}."""

    noisy = False

    def __init__(self, hub: Hub, origins: Sequence[str] = ()) -> None:
        root: Resource = File(str(PAGE))
        root.putChild(b"ws", WebSocketResource(ChatWebSocketFactory(hub, origins)))
        super().__init__(root)
