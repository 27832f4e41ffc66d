"""Sending at once on a real loopback socket: everything arrives, in order."""

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.tcp import Connection

from chatroute.frontends.sending import SendsAtOnce, direct_connection


class Collector(Protocol):
    """Keeps what it receives; fires C{done} once C{expected} bytes came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))


class Writer(SendsAtOnce, Protocol):
    def __init__(self) -> None:
        self.connected_: Deferred[Writer] = Deferred()

    def connectionMade(self) -> None:
        self._direct = direct_connection(self.transport)
        self.connected_.callback(self)


@pytest_twisted.ensureDeferred
async def test_small_and_large_writes_arrive_whole_and_in_order():
    # Larger than the kernel takes at once: the rest waits in Twisted's queue,
    # and what is written after must not overtake it.
    pieces = [b"small line\r\n", b"x" * 8_000_000, b"after the big one\r\n"]
    pieces += [b"%d\r\n" % n for n in range(1000)]
    expected = b"".join(pieces)
    collector = Collector(len(expected))
    writer = Writer()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: collector)
    )
    try:
        address = port.getHost()
        client = TCP4ClientEndpoint(reactor, "127.0.0.1", address.port)
        await client.connect(Factory.forProtocol(lambda: writer))
        await writer.connected_
        assert isinstance(writer.transport, Connection), "a real TCP connection"
        assert direct_connection(writer.transport) is writer.transport, "sends directly"
        for piece in pieces:
            writer.write(piece)
        assert await collector.done == expected
        writer.transport.loseConnection()
    finally:
        await port.stopListening()


def test_other_transports_get_their_own_write():
    from twisted.internet.testing import StringTransport

    assert direct_connection(StringTransport()) is None
