"""C{SO_REUSEPORT} listeners: what they are made from, and two of them sharing one port."""

import socket
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from chatroute import certs
from chatroute.reuseport import ReusePortEndpoint, reuse_port


def tls_description(tmp_path: Path, port: int = 0, interface: str = "127.0.0.1") -> str:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    certs.main(["--key", str(key), "--cert", str(cert)])
    return certs.listen_description(key, cert, port, interface)


@pytest.mark.parametrize(
    ("description", "port", "interface", "backlog", "family"),
    [
        ("tcp:4000", 4000, "", 50, socket.AF_INET),
        ("tcp:4000:interface=127.0.0.1:backlog=7", 4000, "127.0.0.1", 7, socket.AF_INET),
        ("tcp6:4001:interface=\\:\\:1:backlog=8", 4001, "::1", 8, socket.AF_INET6),
        ("tcp6:4001", 4001, "::", 50, socket.AF_INET6),
    ],
)
def test_a_tcp_endpoint_keeps_its_port_interface_and_backlog(
    description, port, interface, backlog, family
):
    endpoint = reuse_port(reactor, serverFromString(reactor, description))
    assert (endpoint._port, endpoint._interface, endpoint._backlog) == (port, interface, backlog)
    assert endpoint.family == family
    assert endpoint.tls is None


def test_a_tls_endpoint_keeps_its_context(tmp_path):
    parsed = serverFromString(reactor, tls_description(tmp_path, 4002) + ":backlog=9")
    endpoint = reuse_port(reactor, parsed)
    assert (endpoint._port, endpoint._interface, endpoint._backlog) == (4002, "127.0.0.1", 9)
    assert endpoint.tls is parsed._sslContextFactory


@pytest.mark.parametrize("description", ["unix:/tmp/chat.sock", "unix:address=/tmp/other.sock"])
def test_other_endpoints_are_refused(description):
    with pytest.raises(ValueError, match="applies to tcp, tcp6, ssl endpoints only"):
        reuse_port(reactor, serverFromString(reactor, description))


def test_refused_where_the_system_has_no_so_reuseport(monkeypatch):
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(ValueError, match="no SO_REUSEPORT"):
        reuse_port(reactor, serverFromString(reactor, "tcp:0"))


@pytest_twisted.ensureDeferred
async def test_two_listeners_share_one_port():
    factory = Factory.forProtocol(Protocol)
    first = await ReusePortEndpoint(reactor, 0, "127.0.0.1", 5).listen(factory)
    try:
        number = first.getHost().port
        second = await ReusePortEndpoint(reactor, number, "127.0.0.1", 5).listen(factory)
        try:
            assert second.getHost().port == number
            for port in (first, second):
                assert port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        finally:
            await second.stopListening()
    finally:
        await first.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_port_held_without_so_reuseport_cannot_be_shared():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        endpoint = ReusePortEndpoint(reactor, number, "127.0.0.1", 5)
        with pytest.raises(CannotListenError, match="in use"):
            await endpoint.listen(Factory.forProtocol(Protocol))


@pytest_twisted.ensureDeferred
async def test_a_tls_listener_wraps_the_factory_in_tls(tmp_path):
    endpoint = reuse_port(reactor, serverFromString(reactor, tls_description(tmp_path)))
    factory = Factory.forProtocol(Protocol)
    port = await endpoint.listen(factory)
    try:
        assert isinstance(port.factory, TLSMemoryBIOFactory)
        assert port.factory.wrappedFactory is factory
    finally:
        await port.stopListening()
