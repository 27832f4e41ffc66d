"""The twistd plugin's options and the services they build."""

import pytest
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError

from chatroute.protocol import ChatServerFactory
from chatroute.tap import DEFAULT_PORT, Options, makeService


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_plugin_is_found_by_twistd():
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert makers["chatroute"].options is Options


def test_defaults():
    options = parse()
    assert options["listen"] == [f"tcp:{DEFAULT_PORT}"]
    assert options["max-line-length"] == 4096


def test_port_listens_on_all_interfaces():
    assert parse("--port", "4000")["listen"] == ["tcp:4000"]


def test_listen_is_repeatable_and_combines_with_port():
    options = parse(
        "--listen", "tcp:1:interface=127.0.0.1", "--listen", "tcp6:2:interface=\\:\\:1", "-p", "3"
    )
    assert options["listen"] == ["tcp:1:interface=127.0.0.1", "tcp6:2:interface=\\:\\:1", "tcp:3"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "http"],
        ["--port", "70000"],
        ["--listen", "nonsense:1"],
        ["--listen", "tcp:notaport"],
        ["--max-line-length", "0"],
        ["--max-line-length", "many"],
        ["--unknown"],
    ],
)
def test_bad_options(argv):
    with pytest.raises(UsageError):
        parse(*argv)


def test_make_service_listens_on_every_endpoint_with_one_chat():
    reactor = MemoryReactor()
    options = parse(
        "--listen", "tcp:1234:interface=127.0.0.1", "--port", "5678", "--max-line-length", "99"
    )
    service = makeService(options, reactor)
    assert isinstance(service, MultiService)
    service.startService()
    try:
        listened = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        assert listened == [(1234, "127.0.0.1"), (5678, "")]
        factories = [factory for _, factory, _, _ in reactor.tcpServers]
        assert all(isinstance(factory, ChatServerFactory) for factory in factories)
        assert factories[0].router is factories[1].router
        assert factories[0].max_line_length == 99
    finally:
        service.stopService()
