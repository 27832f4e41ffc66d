"""
The twistd plugin's options and service: C{twistd -n chatroute --port 12345}.
"""

import sqlite3
from typing import Any, ClassVar

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore
from twisted.logger import Logger
from twisted.python import usage

from chatroute.accounts import Accounts
from chatroute.auth import LoginThrottle, login_portal
from chatroute.interfaces import IStorage
from chatroute.passwords import PasswordHashing
from chatroute.protocol import DEFAULT_MAX_LINE_LENGTH, ChatServerFactory
from chatroute.router import Router, RouterSettings
from chatroute.storage.sqlite import SchemaError, open_sqlite, prepare_database

DEFAULT_PORT = 12345
DEFAULT_DATABASE = "chatroute.db"
MEMORY_DATABASE = ":memory:"
_ROUTER_DEFAULTS = RouterSettings()

log = Logger()


def _at_least(minimum: int) -> Any:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, not {number}")
        return number

    return parse


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
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["port", "p", None, "TCP port to listen on, on all interfaces.", _port_number],
        [
            "db",
            None,
            DEFAULT_DATABASE,
            f"SQLite database file (created if missing); {MEMORY_DATABASE} keeps nothing.",
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
    The whole server: opens the database, then listens on every endpoint.

    Stopping closes the listeners first, then the database, so that every
    write already acknowledged to a client is on disk.
    """

    def __init__(self, options: Options, reactor: Any) -> None:
        super().__init__()
        self._options = options
        self._reactor = reactor
        self._ports: list[IListeningPort] = []
        self._storage: IStorage | None = None
        self.started: Deferred[None] | None = None

    def startService(self) -> None:
        """Open the database and start listening; failing that, log why and stop."""
        super().startService()
        self.started = Deferred.fromCoroutine(self._start())
        self.started.addErrback(self._start_failed)

    async def _start(self) -> None:
        options, reactor = self._options, self._reactor
        storage = self._storage = await open_sqlite(options["db"], reactor)
        router = Router(storage, reactor, options.router_settings())
        hashing = PasswordHashing(reactor)
        accounts = Accounts(
            router, storage, hashing, login_portal(storage, hashing), LoginThrottle(reactor)
        )
        factory = ChatServerFactory(router, accounts, options["max-line-length"])
        for description in options["listen"]:
            port = await serverFromString(reactor, description).listen(factory)
            self._ports.append(port)

    def _start_failed(self, failure: Any) -> None:
        log.failure("chatroute could not start", failure)
        self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop listening, then close the database."""
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        ports, self._ports = self._ports, []
        await gatherResults([maybeDeferred(port.stopListening) for port in ports])
        if self._storage is not None:
            await self._storage.close()


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    """
    The chat service the options describe.

    The database is created or upgraded here, before the reactor runs, so a
    database that cannot be used stops the server with a clear error.

    @raise SystemExit: the database cannot be used; the message says why.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    if options["db"] != MEMORY_DATABASE:
        try:
            prepare_database(options["db"])
        except (sqlite3.Error, SchemaError) as error:
            raise SystemExit(f"chatroute: cannot use database {options['db']}: {error}") from None
    return ChatService(options, reactor)
