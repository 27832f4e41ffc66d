"""
The twistd plugin's options and service: C{twistd -n chatroute --port 12345}.
"""

from typing import Any, ClassVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore
from twisted.python import usage

from chatroute.protocol import DEFAULT_MAX_LINE_LENGTH, ChatServerFactory
from chatroute.router import Router

DEFAULT_PORT = 12345


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, not {number}")
    return number


def _port_number(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"not a TCP port: {number}")
    return number


class Options(usage.Options):
    """Command-line options of C{twistd chatroute}."""

    synopsis = "[--port PORT] [--listen ENDPOINT ...] [options]"
    longdesc = (
        "Run the chatroute chat server. With neither --port nor --listen it "
        f"listens on TCP port {DEFAULT_PORT} on all interfaces."
    )
    optParameters: ClassVar[list[list[Any]]] = [
        ["port", "p", None, "TCP port to listen on, on all interfaces.", _port_number],
        [
            "max-line-length",
            None,
            DEFAULT_MAX_LINE_LENGTH,
            "Longest line accepted from a client, in bytes; longer ones are refused.",
            _positive_int,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on a Twisted endpoint, e.g. tcp:12345:interface=127.0.0.1 (repeatable).
        """
        from twisted.internet import reactor

        try:
            serverFromString(reactor, description)
        except (ValueError, KeyError, TypeError) as error:
            raise usage.UsageError(f"bad --listen endpoint {description!r}: {error}") from None
        self["listen"].append(description)

    def postOptions(self) -> None:
        """Turn --port into an endpoint; listen on the default port if nothing was asked."""
        if self["port"] is not None:
            self["listen"].append(f"tcp:{self['port']}")
        if not self["listen"]:
            self["listen"].append(f"tcp:{DEFAULT_PORT}")


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    """One listening service per endpoint, all serving the same chat."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    factory = ChatServerFactory(Router(), options["max-line-length"])
    service = MultiService()
    for description in options["listen"]:
        endpoint = serverFromString(reactor, description)
        StreamServerEndpointService(endpoint, factory).setServiceParent(service)
    return service
