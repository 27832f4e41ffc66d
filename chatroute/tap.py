"""
The twistd plugin's options and service: C{twistd -n chatroute --port 12345}.
"""

import math
import sqlite3
from typing import Any, ClassVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage

from chatroute.core.accounts import Accounts
from chatroute.core.auth import LoginThrottle, login_portal
from chatroute.core.interfaces import IStorage
from chatroute.core.limits import Limits
from chatroute.core.passwords import PasswordHashing
from chatroute.core.router import Router, RouterSettings
from chatroute.core.session import DEFAULT_MAX_LINE_LENGTH, Hub
from chatroute.frontends.line import ChatServerFactory
from chatroute.frontends.web import ChatWebSite, origin_of
from chatroute.storage.memory import MemoryStorage
from chatroute.storage.sqlite import MEMORY, SERVER_LINGER, SchemaError, open_sqlite

DEFAULT_PORT = 12345
DEFAULT_DATABASE = "chatroute.db"
_ROUTER_DEFAULTS = RouterSettings()
_LIMITS = Limits()

log = Logger()


def _at_least(minimum: int) -> Any:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, not {number}")
        return number

    return parse


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not 0 <= number < math.inf:  # also refuses NaN
        raise ValueError(f"must be a number, 0 or more, not {value}")
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
    optFlags: ClassVar[list[list[str | None]]] = [
        ["require-account", None, "Guests may take a nickname but not chat until they log in."],
        [
            "require-tls-for-login",
            None,
            "Refuse passwords over plain TCP, except from this machine.",
        ],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["port", "p", None, "TCP port to listen on, on all interfaces.", _port_number],
        [
            "db",
            None,
            DEFAULT_DATABASE,
            f"SQLite database file (created if missing); {MEMORY} keeps nothing on disk.",
        ],
        [
            "max-line-length",
            None,
            DEFAULT_MAX_LINE_LENGTH,
            "Longest line accepted from a client, in bytes; longer ones are refused.",
            _at_least(1),
        ],
        [
            "offline-cap",
            None,
            _ROUTER_DEFAULTS.offline_cap,
            "Most messages kept for one offline account.",
            _at_least(0),
        ],
        [
            "history",
            None,
            _ROUTER_DEFAULTS.join_history,
            "Room messages replayed on joining a room (0: none).",
            _at_least(0),
        ],
        [
            "max-history",
            None,
            _ROUTER_DEFAULTS.max_history,
            "Most room messages one /history command replays.",
            _at_least(0),
        ],
        [
            "flood-rate",
            None,
            _LIMITS.flood_rate,
            "Lines per second one connection may send on average (0: no limit).",
            _non_negative_float,
        ],
        [
            "flood-burst",
            None,
            _LIMITS.flood_burst,
            "Lines one connection may send at once above the rate.",
            _at_least(1),
        ],
        [
            "max-per-address",
            None,
            _LIMITS.max_per_address,
            "Connections from one IP address (0: no limit).",
            _at_least(0),
        ],
        [
            "max-connections",
            None,
            _LIMITS.max_connections,
            "Connections in all (0: no limit).",
            _at_least(0),
        ],
        [
            "register-timeout",
            None,
            _LIMITS.register_timeout,
            "Seconds a connection may take to choose a nickname (0: no limit).",
            _non_negative_float,
        ],
        [
            "idle-timeout",
            None,
            _LIMITS.idle_timeout,
            "Seconds a client may stay silent; /ping keeps it alive (0: no limit).",
            _non_negative_float,
        ],
        [
            "max-send-buffer",
            None,
            _LIMITS.max_send_buffer,
            "Bytes that may wait for a client that is not reading before it is "
            "disconnected (0: no limit).",
            _at_least(0),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["listen-web"] = []
        self["web-origin"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on a Twisted endpoint, e.g. tcp:12345:interface=127.0.0.1 (repeatable).
        """
        self["listen"].append(_endpoint_description("--listen", description))

    def opt_listen_web(self, description: str) -> None:
        """
        Serve the chat page and its WebSocket on a Twisted endpoint, e.g.
        tcp:8080:interface=127.0.0.1, or ssl:... for HTTPS (repeatable).
        """
        self["listen-web"].append(_endpoint_description("--listen-web", description))

    def opt_web_origin(self, origin: str) -> None:
        """
        Let pages from this origin, e.g. https://chat.example.org, use the
        chat's WebSocket, besides the chat's own page (repeatable).
        """
        if origin_of(origin) is None:
            raise usage.UsageError(
                f"--web-origin wants scheme://host[:port], e.g. https://chat.example.org; "
                f"got {origin!r}"
            )
        self["web-origin"].append(origin)

    def postOptions(self) -> None:
        """Turn --port into an endpoint; listen on the default port if nothing was asked."""
        if self["port"] is not None:
            self["listen"].append(f"tcp:{self['port']}")
        if not self["listen"]:
            self["listen"].append(f"tcp:{DEFAULT_PORT}")

    def limits(self) -> Limits:
        """The limits on each client as these options set them."""
        return Limits(
            flood_rate=self["flood-rate"],
            flood_burst=self["flood-burst"],
            max_per_address=self["max-per-address"],
            max_connections=self["max-connections"],
            register_timeout=self["register-timeout"],
            idle_timeout=self["idle-timeout"],
            max_send_buffer=self["max-send-buffer"],
        )

    def router_settings(self) -> RouterSettings:
        """The router's rules as these options set them."""
        return RouterSettings(
            require_account=bool(self["require-account"]),
            offline_cap=self["offline-cap"],
            join_history=self["history"],
            max_history=self["max-history"],
        )


def _endpoint_description(option: str, description: str) -> str:
    """
    C{description}, checked to be a Twisted server endpoint.

    @raise usage.UsageError: it is not one; the message names C{option}.
    """
    from twisted.internet import reactor

    try:
        serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as error:
        raise usage.UsageError(f"bad {option} endpoint {description!r}: {error}") from None
    return description


class ChatService(MultiService):
    """
    The whole server: one listening service per endpoint, all serving one chat.

    Listening starts before the reactor runs, so a port that cannot be had
    stops the server at once with a clear message. Stopping closes the
    listeners, tells everyone still connected, then closes the storage, so
    every write acknowledged to a client is on disk.
    """

    def __init__(self, hub: Hub, storage: IStorage) -> None:
        super().__init__()
        self.hub = hub
        self._storage = storage

    def privilegedStartService(self) -> None:
        """Listen on every endpoint now, or exit saying which one failed and why."""
        for service in self:
            assert isinstance(service, _Listener)
            try:
                service.privilegedStartService()
            except Exception as error:
                raise SystemExit(
                    f"chatroute: cannot listen on {service.description}: {error}"
                ) from None
            log.info("chatroute listening on {endpoint}", endpoint=service.description)
        Service.privilegedStartService(self)

    def stopService(self) -> Deferred[None]:
        """Stop listening, say goodbye to everyone, then close the storage."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await super().stopService()
        self.hub.router.close_all("the server is shutting down")
        await self._storage.close()


class _Listener(StreamServerEndpointService):
    """Listens on one endpoint; failing to listen raises at once."""

    _raiseSynchronously = True

    def __init__(self, description: str, reactor: Any, factory: IProtocolFactory) -> None:
        super().__init__(serverFromString(reactor, description), factory)
        self.description = description


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    The chat service the options describe.

    The database is created or upgraded here, before the reactor runs, so a
    database that cannot be used stops the server with a clear error.

    @raise SystemExit: the database cannot be used; the message says why.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    storage = _storage(options["db"], reactor)
    router = Router(storage, reactor, options.router_settings())
    hashing = PasswordHashing(reactor)
    accounts = Accounts(
        router, storage, hashing, login_portal(storage, hashing), LoginThrottle(reactor)
    )
    hub = Hub(
        router,
        accounts,
        reactor,
        options.limits(),
        options["max-line-length"],
        require_tls_for_login=bool(options["require-tls-for-login"]),
    )
    factory = ChatServerFactory(hub)
    service = ChatService(hub, storage)
    for description in options["listen"]:
        _Listener(description, reactor, factory).setServiceParent(service)
    if options["listen-web"]:
        site = ChatWebSite(hub, options["web-origin"])
        for description in options["listen-web"]:
            _Listener(description, reactor, site).setServiceParent(service)
    return service


def _storage(database: str, reactor: Any) -> IStorage:
    if database == MEMORY:
        return MemoryStorage()
    try:
        return open_sqlite(database, reactor, linger=SERVER_LINGER)
    except (sqlite3.Error, SchemaError) as error:
        raise SystemExit(f"chatroute: cannot use database {database}: {error}") from None
