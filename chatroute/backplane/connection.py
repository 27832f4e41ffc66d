"""
A link to Redis that comes back by itself.

The client is txredisapi, which is Twisted-native (no thread, no asyncio
reactor) and is what Synapse's Redis replication uses. Since its 1.6.0 a
C{RedisFactory} is a plain factory that is connected through an endpoint;
we use only its protocols (commands, pub/sub, AUTH and SELECT on connect) and
do the connecting ourselves with Twisted's C{ClientService}, so that this
module decides the backoff, logs each loss and return once, and tells its
owner when a fresh connection is ready (a subscriber must subscribe again,
the backplane must assert its state again). docs/deploy.md says why this
client and not another.

L{parse_redis_url} reads C{redis://[user:password@]host:port/N};
L{RedisLink} keeps one connection open to it, with a backoff between
attempts (L{MIN_RETRY_DELAY} doubling up to L{MAX_RETRY_DELAY}); while it is
down, commands fail at once with L{RedisUnavailable}, never wait.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

DEFAULT_PORT = 6379
MIN_RETRY_DELAY = 0.1
"""Seconds before the first attempt to connect again."""
MAX_RETRY_DELAY = 5.0
"""The longest wait between attempts: Redis back is noticed within this."""
CONNECT_TIMEOUT = 5.0
REPLY_TIMEOUT = 10.0
"""Seconds a command may wait for its reply before the connection is taken as dead and dropped."""


class RedisUnavailable(Exception):
    """There is no usable connection to Redis now; the command was not sent."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where Redis is, and how to log in to it: a parsed C{redis://} URL."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """The address for the log, without the password."""
        return f"redis://{self.host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    The address in C{url}: C{redis://[[user]:password@]host[:port][/N]}.

    @raise ValueError: C{url} is not of that form; the message says why.
    """
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError("expected redis://host:port/N")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the database must be a number, not {path!r}")
    if parts.query or parts.fragment:
        raise ValueError("no ?query or #fragment is understood")
    return RedisAddress(
        parts.hostname,
        port,
        int(path or 0),
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
    )


class _Commands(txredisapi.RedisProtocol):  # type: ignore[misc]
    """txredisapi's command protocol, telling its link when it is gone."""

    link: "RedisLink"

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self.link._lost(self, why)


class _Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """txredisapi's pub/sub protocol, handing each message to its link."""

    link: "RedisLink"

    def messageReceived(self, pattern: str | None, channel: str, message: Any) -> None:
        self.link.on_message(channel, message)

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self.link._lost(self, why)


class _LinkFactory(Factory):
    """
    Builds the link's protocols. txredisapi's protocols call back to their
    factory when AUTH or SELECT is refused; that stops the link.
    """

    noisy = False
    isLazy = True  # txredisapi: a refused AUTH is logged, not raised to a pool

    def __init__(self, link: "RedisLink") -> None:
        self._link = link

    def buildProtocol(self, addr: IAddress | None) -> txredisapi.BaseRedisProtocol:
        address = self._link.address
        protocol = self._link.protocol_class(
            charset="utf-8",
            replyTimeout=REPLY_TIMEOUT,
            password=address.password,
            dbid=address.db or None,
            # Values are ours to read: "007" stays a string.
            convertNumbers=False,
            username=address.username,
        )
        protocol.factory = self
        protocol.link = self._link
        return protocol

    def stopTrying(self) -> None:
        self._link.refused()

    def connectionError(self, why: str) -> None:
        RedisLink.log.error("{address}: {why}", address=self._link.address, why=why)


class RedisLink:
    """
    One connection to Redis, made again whenever it is lost, with backoff.

    @ivar on_ready: called with no arguments each time a connection is
        ready (logged in, database selected), the first one too.
    @ivar on_down: called with no arguments each time a ready connection is lost.
    @ivar on_message: for a subscriber link, called with the channel and
        the message of each published message.
    @ivar reconnects: how many times a connection has been ready again
        after the first one (each after a loss), for monitoring.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        address: RedisAddress,
        name: str,
        subscriber: bool = False,
        min_delay: float = MIN_RETRY_DELAY,
        max_delay: float = MAX_RETRY_DELAY,
    ) -> None:
        """
        @param reactor: connects, and times the retries.
        @param name: what this link is for, in the log ("commands").
        @param subscriber: speak pub/sub (L{subscribe}, L{on_message}) rather than commands.
        """
        self.address = address
        self.name = name
        self.protocol_class: type[txredisapi.BaseRedisProtocol] = (
            _Subscriber if subscriber else _Commands
        )
        self.on_ready: Callable[[], None] = lambda: None
        self.on_down: Callable[[], None] = lambda: None
        self.on_message: Callable[[str, Any], None] = lambda channel, message: None
        self._clock: IReactorTime = reactor
        self._protocol: txredisapi.BaseRedisProtocol | None = None
        self._down_since: float | None = None
        self._stopping = False
        self._waiting: list[Deferred[None]] = []
        self._connected_before = False
        self.reconnects = 0
        endpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)
        self._service = ClientService(
            endpoint,
            _LinkFactory(self),
            retryPolicy=backoffPolicy(min_delay, max_delay, factor=2.0),
            clock=reactor,
            prepareConnection=self._prepare,
        )

    @property
    def ready(self) -> bool:
        """Whether a connection is up and usable now."""
        return self._protocol is not None

    def start(self) -> None:
        """Start connecting; connect again whenever the connection is lost."""
        self._down_since = self._clock.seconds()
        self._service.startService()

    def stop(self) -> Deferred[None]:
        """Close the connection and stop connecting. Deferred firing once closed."""
        self._stopping = True
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._service.stopService()

    def refused(self) -> None:
        """Redis refused our AUTH or SELECT: retrying cannot help; stop."""
        self.log.critical(
            "{address} refused the {name} connection's login or database; giving up",
            address=self.address,
            name=self.name,
        )
        self._stopping = True
        self._service.stopService()

    def _prepare(self, protocol: txredisapi.BaseRedisProtocol) -> Deferred[None]:
        """A connection is made: it is ready once txredisapi has logged in and selected."""
        return protocol.whenConnected().addCallback(self._connected)  # type: ignore[no-any-return]

    def _connected(self, protocol: txredisapi.BaseRedisProtocol) -> None:
        if not protocol.connected:
            return
        self._protocol = protocol
        if self._connected_before:
            self.reconnects += 1
        self._connected_before = True
        down_since, self._down_since = self._down_since, None
        if down_since is not None and self._service.running:
            outage = self._clock.seconds() - down_since
            self.log.info(
                "{name}: connected to {address} ({outage:.1f} s without)",
                name=self.name,
                address=self.address,
                outage=outage,
            )
        try:
            self.on_ready()
        except Exception:
            self.log.failure("{name}: starting a fresh connection failed", name=self.name)
        waiting, self._waiting = self._waiting, []
        for ready in waiting:
            ready.callback(None)

    def _lost(self, protocol: txredisapi.BaseRedisProtocol, why: Failure) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        self._down_since = self._clock.seconds()
        if not self._stopping:
            self.log.warn(
                "{name}: lost the connection to {address} ({why}); connecting again with backoff",
                name=self.name,
                address=self.address,
                why=why.getErrorMessage(),
            )
        try:
            self.on_down()
        except Exception:
            self.log.failure("{name}: handling the lost connection failed", name=self.name)

    def execute(self, *arguments: Any) -> Deferred[Any]:
        """
        Send one command. Deferred firing with its reply, failing with
        L{RedisUnavailable} at once if there is no connection now, or with
        txredisapi's C{ConnectionError} if the connection is lost before the
        reply (the command may or may not have run), C{ResponseError} for an
        error reply.
        """
        protocol = self._protocol
        if protocol is None:
            raise RedisUnavailable(f"no connection to {self.address}")
        return protocol.execute_command(*arguments)  # type: ignore[no-any-return]

    def subscribe(self, *channels: str) -> Deferred[Any]:
        """
        Subscribe to C{channels} on this (subscriber) connection. Deferred
        firing once Redis confirmed; a lost connection forgets them, so
        subscribe again from L{on_ready}.
        """
        protocol = self._protocol
        if protocol is None:
            raise RedisUnavailable(f"no connection to {self.address}")
        return protocol.subscribe(list(channels))  # type: ignore[no-any-return]

    def eval(self, script: str, keys: list[str], arguments: list[Any]) -> Deferred[Any]:
        """
        Run a Lua C{script} (by its hash once Redis knows it), as L{execute}
        runs a command. Deferred firing with the script's reply.
        """
        protocol = self._protocol
        if protocol is None:
            raise RedisUnavailable(f"no connection to {self.address}")
        return protocol.eval(script, keys, arguments)  # type: ignore[no-any-return]

    def when_ready(self) -> Deferred[None]:
        """Deferred firing once a connection is ready (at once if one is)."""
        if self._protocol is not None:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiting.append(waiting)
        return waiting
