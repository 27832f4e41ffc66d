"""
Listening with C{SO_REUSEPORT} (C{--reuse-port}): several chatroute
processes on one machine share one listening port, and the kernel spreads
the connections over them, so that every core serves.

Twisted's C{listenTCP} cannot set the option, so L{ReusePortEndpoint} makes
the socket itself (C{SO_REUSEADDR} and C{SO_REUSEPORT}, bound, listening,
non-blocking) and hands it to the reactor's C{adoptStreamPort}; for a TLS
endpoint it wraps the factory in C{TLSMemoryBIOFactory}, as the reactor's
own C{listenSSL} does. L{reuse_port} turns the endpoint that Twisted's
C{serverFromString} made of a C{tcp:}, C{tcp6:} or C{ssl:} description into
one, keeping its port, interface, backlog and TLS context.

On Linux every process that shares the port must run as the same user, and
each accepts the connections that hash to its socket; a process that exits
takes only its own connections with it (its queued, not yet accepted ones
are reset).
"""

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

SUPPORTED = ("tcp", "tcp6", "ssl")
"""The endpoint types that C{--reuse-port} applies to."""


def available() -> bool:
    """Whether this system has C{SO_REUSEPORT} at all."""
    return hasattr(socket, "SO_REUSEPORT")


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    A TCP (or TLS over TCP) server endpoint whose socket has C{SO_REUSEPORT}.

    @ivar family: C{AF_INET} or C{AF_INET6}.
    @ivar tls: the TLS context of an C{ssl:} endpoint, or None for plain TCP.
    """

    def __init__(
        self,
        reactor: Any,
        port: int,
        interface: str,
        backlog: int,
        family: socket.AddressFamily = socket.AF_INET,
        tls: IOpenSSLServerConnectionCreator | None = None,
    ) -> None:
        """
        @param reactor: an C{IReactorSocket}, which adopts the listening socket.
        @param interface: the address to bind, C{""} (or C{"::"}) for all.
        """
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog
        self.family = family
        self.tls = tls

    def listen(self, protocolFactory: IProtocolFactory) -> "defer.Deferred[IListeningPort]":
        """
        Listen now. Deferred firing with the port, or (already) failed with
        C{CannotListenError} if the socket could not be bound.
        """
        return defer.execute(self._listen, protocolFactory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        with socket.socket(self.family, socket.SOCK_STREAM) as listening:
            try:
                listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                listening.bind((self._interface, self._port))
                listening.listen(self._backlog)
            except OSError as error:
                raise CannotListenError(self._interface, self._port, error) from None
            listening.setblocking(False)
            # The reactor listens on a duplicate of the descriptor; ours is closed here.
            port: IListeningPort = self._reactor.adoptStreamPort(
                listening.fileno(), self.family, factory
            )
        return port


def reuse_port(reactor: Any, endpoint: IStreamServerEndpoint) -> ReusePortEndpoint:
    """
    The endpoint C{endpoint} (as C{serverFromString} parsed a C{tcp:},
    C{tcp6:} or C{ssl:} description) listening with C{SO_REUSEPORT}.

    @raise ValueError: C{endpoint} is of another type, or this system has no
        C{SO_REUSEPORT}; the message says which.
    """
    if not available():
        raise ValueError("this system has no SO_REUSEPORT")
    # Twisted's endpoints keep what they were given in these attributes.
    if isinstance(endpoint, SSL4ServerEndpoint):
        return ReusePortEndpoint(
            reactor,
            endpoint._port,
            endpoint._interface,
            endpoint._backlog,
            _family(endpoint._interface),
            endpoint._sslContextFactory,
        )
    if isinstance(endpoint, TCP6ServerEndpoint):
        return ReusePortEndpoint(
            reactor, endpoint._port, endpoint._interface, endpoint._backlog, socket.AF_INET6
        )
    if isinstance(endpoint, TCP4ServerEndpoint):
        return ReusePortEndpoint(
            reactor, endpoint._port, endpoint._interface, endpoint._backlog, socket.AF_INET
        )
    raise ValueError(f"it applies to {', '.join(SUPPORTED)} endpoints only")


def _family(interface: str) -> socket.AddressFamily:
    """The family of an C{ssl:} endpoint's interface: Twisted's C{listenSSL} takes both."""
    return socket.AF_INET6 if ":" in interface else socket.AF_INET
