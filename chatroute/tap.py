"""
The twistd plugin's options and service: C{twistd -n chatroute --port 12345}.
"""

import contextlib
import os
import sqlite3
from typing import Any, ClassVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import _parse, serverFromString
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage

from chatroute.backplane.connection import parse_redis_url
from chatroute.backplane.redis import RedisBackplane
from chatroute.core.accounts import Accounts
from chatroute.core.auth import LoginThrottle, login_portal
from chatroute.core.interfaces import IBackplane, IStorage
from chatroute.core.limits import Limits
from chatroute.core.passwords import PasswordHashing
from chatroute.core.router import Router, RouterSettings
from chatroute.core.session import DEFAULT_MAX_LINE_LENGTH, Hub
from chatroute.eventloop import skip_log_context
from chatroute.frontends.irc import SERVER as IRC_SERVER
from chatroute.frontends.irc import IRCServerFactory
from chatroute.frontends.line import ChatServerFactory
from chatroute.frontends.web import ChatWebSite, origin_of
from chatroute.metrics import ServerMetrics
from chatroute.options import CommandOptions, non_negative_number, port_number, whole_number
from chatroute.reuseport import reuse_port
from chatroute.storage.batch import SERVER_BACKGROUND_LINGER, SERVER_LINGER
from chatroute.storage.memory import MemoryStorage
from chatroute.storage.sql import SchemaError
from chatroute.storage.sqlite import MEMORY, open_sqlite

DEFAULT_PORT = 12345
# Twisted's default of 50 overflows under a burst of connections (see
# docs/performance.md, "A burst of connections").
DEFAULT_BACKLOG = 4096
DEFAULT_DATABASE = "chatroute.db"
# A --db in one of these forms is a libpq URL: PostgreSQL. Anything else is an SQLite file.
POSTGRES_URL_SCHEMES = ("postgresql://", "postgres://")
# The listeners that --reuse-port shares between nodes: the chat's, not the
# metrics one, whose figures are each node's own (a shared port would answer
# a scrape from whichever node the kernel picked).
_SHARED_LISTENERS = ("listen", "listen-web", "listen-irc")
_ROUTER_DEFAULTS = RouterSettings()
_LIMITS = Limits()

log = Logger()


# Where each endpoint type that has a listen queue takes its backlog among
# its positional arguments (after the type): tcp:PORT:INTERFACE:BACKLOG,
# tcp6:PORT:BACKLOG:INTERFACE, ssl:PORT:KEY:CERT:METHOD:INTERFACE:BACKLOG.
_BACKLOG_POSITION = {"tcp": 3, "tcp6": 2, "ssl": 6}


def with_backlog(description: str, backlog: int) -> str:
    """
    The endpoint C{description} with a listen queue of C{backlog} connections.

    Only C{tcp}, C{tcp6} and C{ssl} endpoints get it, and only those that do
    not set a backlog of their own (C{backlog=}, or by position); any other
    description is returned as it is.
    """
    # Twisted's own parser of descriptions, so escapes read exactly as it reads them.
    arguments, keywords = _parse(description)
    position = _BACKLOG_POSITION.get(arguments[0].lower()) if arguments else None
    if position is None or "backlog" in keywords or len(arguments) > position:
        return description
    return f"{description}:backlog={backlog}"


class Options(CommandOptions):
    """Command-line options of C{twistd chatroute}."""

    command = "twistd chatroute"
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
        [
            "reuse-port",
            None,
            "Listen with SO_REUSEPORT on every tcp, tcp6 and ssl listener (--port, --listen, "
            "--listen-web, --listen-irc), so that several nodes on one machine share its ports "
            "(with --redis); see docs/deploy.md. Not --listen-metrics, of any type: each "
            "node's metrics are its own, so each needs a metrics port of its own.",
        ],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["port", "p", None, "TCP port to listen on, on all interfaces.", port_number("port")],
        [
            "backlog",
            None,
            DEFAULT_BACKLOG,
            "Connections the kernel queues for accepting, per listener: for --port and for "
            "tcp, tcp6 and ssl --listen endpoints without a backlog of their own (Linux "
            "caps it at net.core.somaxconn).",
            whole_number("backlog", 1),
        ],
        [
            "db",
            None,
            DEFAULT_DATABASE,
            f"SQLite database file (created if missing); {MEMORY} keeps nothing on disk; "
            "or a PostgreSQL database: postgresql://user@host:port/dbname.",
        ],
        [
            "server-password-file",
            None,
            None,
            "A file whose first line is the server's password, which every connection "
            "must give first (/pass on the line protocol, PASS on IRC); none by default.",
        ],
        [
            "redis",
            None,
            None,
            "Join the other chatroute nodes sharing this Redis into one chat "
            "(redis://[:password@]host:port/N); see docs/deploy.md.",
        ],
        [
            "irc-server-name",
            None,
            IRC_SERVER,
            "The server's name on its IRC listeners (in prefixes and numerics).",
        ],
        [
            "max-line-length",
            None,
            DEFAULT_MAX_LINE_LENGTH,
            "Longest line accepted from a client, in bytes; longer ones are refused.",
            whole_number("max-line-length", 1),
        ],
        [
            "offline-cap",
            None,
            _ROUTER_DEFAULTS.offline_cap,
            "Most messages kept for one offline account.",
            whole_number("offline-cap", 0),
        ],
        [
            "history",
            None,
            _ROUTER_DEFAULTS.join_history,
            "Room messages replayed on joining a room (0: none).",
            whole_number("history", 0),
        ],
        [
            "max-history",
            None,
            _ROUTER_DEFAULTS.max_history,
            "Most room messages one /history command replays.",
            whole_number("max-history", 0),
        ],
        [
            "flood-rate",
            None,
            _LIMITS.flood_rate,
            "Lines per second one connection may send on average (0: no limit).",
            non_negative_number("flood-rate", "lines a second"),
        ],
        [
            "flood-burst",
            None,
            _LIMITS.flood_burst,
            "Lines one connection may send at once above the rate.",
            whole_number("flood-burst", 1),
        ],
        [
            "max-per-address",
            None,
            _LIMITS.max_per_address,
            "Connections from one IP address (0: no limit).",
            whole_number("max-per-address", 0),
        ],
        [
            "max-connections",
            None,
            _LIMITS.max_connections,
            "Connections in all (0: no limit).",
            whole_number("max-connections", 0),
        ],
        [
            "register-timeout",
            None,
            _LIMITS.register_timeout,
            "Seconds a connection may take to choose a nickname (0: no limit).",
            non_negative_number("register-timeout", "seconds"),
        ],
        [
            "idle-timeout",
            None,
            _LIMITS.idle_timeout,
            "Seconds a client may stay silent; /ping keeps it alive (0: no limit).",
            non_negative_number("idle-timeout", "seconds"),
        ],
        [
            "max-send-buffer",
            None,
            _LIMITS.max_send_buffer,
            "Bytes that may wait for a client that is not reading before it is "
            "disconnected (0: no limit).",
            whole_number("max-send-buffer", 0),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["listen-web"] = []
        self["listen-irc"] = []
        self["listen-metrics"] = []
        self["web-origin"] = []
        self["redis-address"] = None

    def opt_listen(self, description: str) -> None:
        """
        Listen on a Twisted endpoint, e.g. tcp:12345:interface=127.0.0.1 (repeatable).
        """
        self["listen"].append(description)

    def opt_listen_web(self, description: str) -> None:
        """Serve the chat page and its WebSocket on an endpoint, e.g. tcp:8080 (repeatable)."""
        self["listen-web"].append(description)

    def opt_listen_irc(self, description: str) -> None:
        """Speak IRC on an endpoint, e.g. tcp:6667 or ssl:6697:privateKey=...:... (repeatable)."""
        self["listen-irc"].append(description)

    def opt_listen_metrics(self, description: str) -> None:
        """Serve Prometheus metrics at /metrics on an endpoint, e.g. tcp:9150 (repeatable)."""
        self["listen-metrics"].append(description)

    def opt_web_origin(self, origin: str) -> None:
        """Let pages of this origin, e.g. https://chat.example.org, use the chat (repeatable)."""
        if origin_of(origin) is None:
            raise usage.UsageError(
                f"--web-origin wants scheme://host[:port], e.g. https://chat.example.org; "
                f"got {origin!r}"
            )
        self["web-origin"].append(origin)

    def postOptions(self) -> None:
        """
        Turn --port into an endpoint; listen on the default port if nothing
        was asked; check every endpoint, with the backlog it will have.
        """
        from twisted.internet import reactor

        self["server-password"] = _read_password(self["server-password-file"])
        if self["redis"] is not None:
            try:
                self["redis-address"] = parse_redis_url(self["redis"])
            except ValueError as error:
                raise usage.UsageError(
                    f"--redis: expected redis://host:port/N, got {self['redis']!r} ({error})"
                ) from None
        if self["port"] is not None:
            self["listen"].append(f"tcp:{self['port']}")
        if not self["listen"]:
            self["listen"].append(f"tcp:{DEFAULT_PORT}")
        for option in ("listen", "listen-web", "listen-irc", "listen-metrics"):
            for description in self[option]:
                try:
                    serverFromString(reactor, self.endpoint(description))
                except (ValueError, KeyError, TypeError) as error:
                    raise usage.UsageError(
                        f"--{option}: expected a Twisted endpoint such as "
                        f"tcp:12345:interface=127.0.0.1, got {description!r} ({error})"
                    ) from None
                if self["reuse-port"] and option in _SHARED_LISTENERS:
                    try:
                        reuse_port(reactor, serverFromString(reactor, description))
                    except ValueError as error:
                        raise usage.UsageError(
                            f"--reuse-port: {error}, not to --{option} {description}"
                        ) from None

    def endpoint(self, description: str) -> str:
        """The endpoint to listen on for C{description}: with --backlog if it has none."""
        return with_backlog(description, self["backlog"])

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


class ChatService(MultiService):
    """
    The whole server: one listening service per endpoint, all serving one chat.

    Listening starts before the reactor runs, so a port that cannot be had
    stops the server at once with a clear message, and leaves behind no
    database file that this start created. Stopping closes the listeners,
    tells everyone still connected, then closes the storage, so every write
    acknowledged to a client is on disk.
    """

    def __init__(self, hub: Hub, storage: IStorage, created: str | None = None) -> None:
        """
        @param created: the SQLite file that making the service created, to
            remove if the service cannot listen (nothing has used it yet).
        """
        super().__init__()
        self.hub = hub
        self._storage = storage
        self._created = created

    def privilegedStartService(self) -> None:
        """Listen on every endpoint now, or exit saying which one failed and why."""
        for service in self:
            if not isinstance(service, _Listener):
                continue  # the backplane: it connects once the reactor runs
            try:
                service.privilegedStartService()
            except Exception as error:
                self._remove_created()
                raise SystemExit(
                    f"chatroute: cannot listen on {service.description}: {error}"
                ) from None
            log.info("chatroute listening on {endpoint}", endpoint=service.description)
        Service.privilegedStartService(self)

    def _remove_created(self) -> None:
        """Remove the database file this start created (with SQLite's side files), if any."""
        if self._created is None:
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._created + suffix)
        log.info("removed {path}, created by this start", path=self._created)

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

    def __init__(
        self,
        description: str,
        endpoint: str,
        reactor: Any,
        factory: IProtocolFactory,
        reuse: bool = False,
    ) -> None:
        """
        @param description: the endpoint as the options gave it, for messages.
        @param endpoint: the endpoint to listen on (the description with a backlog).
        @param reuse: listen with C{SO_REUSEPORT} (C{--reuse-port}).
        """
        listening = serverFromString(reactor, endpoint)
        super().__init__(reuse_port(reactor, listening) if reuse else listening, factory)
        self.description = description


def _read_password(path: str | None) -> str | None:
    """
    The server password in the first line of the file at C{path} (kept in a
    file, so that it shows in no process list); None without a file.

    @raise usage.UsageError: the file cannot be read, or its first line is blank.
    """
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            password = file.readline().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise usage.UsageError(f"--server-password-file: cannot read {path!r}: {error}") from None
    if not password:
        raise usage.UsageError(f"--server-password-file: the first line of {path!r} is blank")
    return password


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
        skip_log_context(reactor)
    database = options["db"]
    created = _sqlite_file(database)
    if created is not None and os.path.exists(created):
        created = None
    storage = _storage(database, reactor)
    backplane = None
    if options["redis"] is not None:
        backplane = RedisBackplane(reactor, options["redis-address"])
    # What the chat uses: with metrics, the same storage and backplane, timed.
    metrics = ServerMetrics(reactor) if options["listen-metrics"] else None
    used_storage: IStorage = storage
    used_backplane: IBackplane | None = backplane
    if metrics is not None:
        used_storage = metrics.timed_storage(storage)
        if backplane is not None:
            used_backplane = metrics.timed_backplane(backplane)
    router = Router(used_storage, reactor, options.router_settings(), backplane=used_backplane)
    hashing = PasswordHashing(reactor)
    accounts = Accounts(
        router,
        used_storage,
        hashing,
        login_portal(used_storage, hashing),
        LoginThrottle(reactor),
    )
    hub = Hub(
        router,
        accounts,
        reactor,
        options.limits(),
        options["max-line-length"],
        require_tls_for_login=bool(options["require-tls-for-login"]),
        server_password=options["server-password"],
    )
    factory = ChatServerFactory(hub)
    service = ChatService(hub, storage, created)
    if backplane is not None:
        backplane.outbox = hub.outbox
        backplane.setServiceParent(service)
    reuse = bool(options["reuse-port"])
    for description in options["listen"]:
        listener = _Listener(description, options.endpoint(description), reactor, factory, reuse)
        listener.setServiceParent(service)
    if options["listen-irc"]:
        irc = IRCServerFactory(hub, options["irc-server-name"])
        for description in options["listen-irc"]:
            listener = _Listener(description, options.endpoint(description), reactor, irc, reuse)
            listener.setServiceParent(service)
    if options["listen-web"]:
        site = ChatWebSite(hub, options["web-origin"])
        for description in options["listen-web"]:
            listener = _Listener(description, options.endpoint(description), reactor, site, reuse)
            listener.setServiceParent(service)
    if metrics is not None:
        metrics.watch(hub, backplane)
        metrics_site = metrics.site()
        for description in options["listen-metrics"]:
            listener = _Listener(description, options.endpoint(description), reactor, metrics_site)
            listener.setServiceParent(service)
    return service


def _sqlite_file(database: str) -> str | None:
    """The path of the SQLite file C{--db} names; None for memory or PostgreSQL."""
    if database == MEMORY or database.startswith(POSTGRES_URL_SCHEMES):
        return None
    return database


def _storage(database: str, reactor: Any) -> IStorage:
    if database == MEMORY:
        return MemoryStorage()
    if database.startswith(POSTGRES_URL_SCHEMES):
        return _postgres(database, reactor)
    try:
        return open_sqlite(
            database, reactor, linger=SERVER_LINGER, background_linger=SERVER_BACKGROUND_LINGER
        )
    except (sqlite3.Error, SchemaError) as error:
        raise SystemExit(f"chatroute: cannot use --db {database}: {error}") from None


def _postgres(url: str, reactor: Any) -> IStorage:
    # Imported here: psycopg is needed only for PostgreSQL (chatroute[postgres]).
    try:
        import psycopg

        from chatroute.storage.postgres import open_postgres, redact
    except ImportError as error:
        raise SystemExit(
            f"chatroute: --db postgresql://... needs psycopg: pip install 'chatroute[postgres]' "
            f"({error})"
        ) from None
    try:
        return open_postgres(
            url, reactor, linger=SERVER_LINGER, background_linger=SERVER_BACKGROUND_LINGER
        )
    except (psycopg.Error, SchemaError) as error:
        raise SystemExit(f"chatroute: cannot use --db {redact(url)}: {error}") from None
