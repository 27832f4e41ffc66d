"""The epoll reactor's poll loop without a log context per event."""

import contextlib
import socket
import sys

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from chatroute.eventloop import skip_log_context


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll is Linux's")
def test_an_epoll_reactor_still_serves_connections_with_the_new_loop():
    from twisted.internet.epollreactor import EPollReactor

    reactor = EPollReactor()
    assert skip_log_context(reactor)
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    client.setblocking(False)
    try:
        client.sendall(b"hello\n")
        received = b""
        for _ in range(500):  # bounded: 500 turns of at most 10 ms
            reactor.iterate(0.01)
            with contextlib.suppress(BlockingIOError):
                received += client.recv(100)
            if received == b"hello\n":
                break
        assert received == b"hello\n"
    finally:
        client.close()
        port.stopListening()
        for _ in range(10):
            reactor.iterate(0)
        reactor._poller.close()


def test_another_reactor_keeps_its_loop():
    reactor = MemoryReactor()
    assert not skip_log_context(reactor)
    assert not hasattr(reactor, "doPoll")
