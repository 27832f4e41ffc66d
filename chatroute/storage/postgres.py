"""
L{IStorage} in PostgreSQL: C{--db postgresql://user@host:port/dbname}.

The queries, the schema versions and group commit are those of every SQL
store (L{chatroute.storage.sql}, L{chatroute.storage.batch}); this module
holds what is PostgreSQL's own: the driver, the threads, and what to do when
the server goes away.

Driver. psycopg 3 (C{psycopg}), a DB-API 2 module, so adbapi runs it as it
runs sqlite3: every query on a thread of a C{ConnectionPool}, never on the
reactor's. psycopg 3 rather than psycopg2: it is the maintained one (psycopg2
takes fixes only), it ships its own type annotations (this code is checked
by mypy at its strictest), and its binary wheel carries libpq, so nothing
but C{pip install chatroute[postgres]} is needed.

Threads. Up to L{POOL_SIZE} threads, each with its own connection: reads
run beside each other and beside the one batch of writes being committed.

Durability. A write's Deferred fires once its batch's C{COMMIT} has returned
(with PostgreSQL's default C{synchronous_commit=on}, once it is on the
server's disk), as with SQLite.

The server going away. A request that fails because the connection is lost
or refused (C{OperationalError}, C{InterfaceError}) is logged once per
outage, and tried again with backoff (L{FIRST_RETRY_DELAY} doubling up to
L{MAX_RETRY_DELAY}) for up to L{RETRY_FOR} seconds; when the server is back,
the next attempt connects afresh (adbapi's C{cp_reconnect}) and chat goes on
without a restart. Past that time the request fails with
L{StorageUnavailable}, and the server keeps running.

Never twice. A read is simply run again. A batch of writes is run again
only when it certainly did not commit: when the error came before its
C{COMMIT}, or when PostgreSQL, asked after the outage, says the batch's
transaction aborted. Each batch notes its transaction id
(C{pg_current_xact_id()}) first; if the connection is lost during
C{COMMIT}, the outcome is unknown, and once a connection can be had again
C{pg_xact_status()} tells: committed (the writes stand, and are
acknowledged), aborted (the batch runs again), or still in progress (ask
again). The batch notes the server's WAL timeline too: on another one (a
failover, a restore) its id may be another transaction's, and the batch is
given up rather than guessed about. So a direct message that was stored is never stored twice, and
every write, not only messages, is applied at most once, with no key of its
own to carry. If PostgreSQL cannot be asked within L{RETRY_FOR}, the
writes fail with L{StorageUnavailable}: the client is told its message
failed, which it may in fact have been stored; it is never told a message
was stored that was not.

Schema. C{schema/postgres/}: PostgreSQL's types for the same tables and
versions. Created or upgraded at start-up in one transaction (PostgreSQL
rolls DDL back too), under an advisory lock so that two servers starting on
one database do not both create it.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.enterprise.adbapi import Connection, ConnectionLost, ConnectionPool
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from chatroute.storage.batch import Operation, run_batch
from chatroute.storage.sql import Dialect, Schema, SQLStorage, StorageClosed, Txn

POSTGRES = Dialect("PostgreSQL", "%s", psycopg.IntegrityError, begin=None)
"""psycopg: C{%s} placeholders; it opens a transaction itself at the first statement."""

CURRENT_SCHEMA = Schema.shipped("postgres")
"""The PostgreSQL schema files shipped with chatroute."""

POOL_SIZE = 3
"""The most connections (and threads) the storage uses."""

CONNECT_TIMEOUT = 10
"""Seconds a connection attempt may take, unless the URL says (C{connect_timeout=})."""

FIRST_RETRY_DELAY = 0.05
"""Seconds before the first retry of a request that failed for a lost connection."""

MAX_RETRY_DELAY = 2.0
"""The longest wait between retries: once the server is back, chat resumes within this."""

RETRY_FOR = 60.0
"""Seconds a request is retried before it fails with L{StorageUnavailable}."""

CLOSING_RETRY_FOR = 5.0
"""Seconds retries go on once the storage is closing, so shutting down never waits long."""

# pg_advisory_xact_lock's key for creating or upgrading the schema: "chatrout".
_SCHEMA_LOCK = 0x63686174726F7574

# Errors of the connection rather than of the request: worth another try.
_LOST = (psycopg.OperationalError, psycopg.InterfaceError, ConnectionLost)

_T = TypeVar("_T")

log = Logger()


class StorageUnavailable(Exception):
    """PostgreSQL could not be reached for long enough that the request was given up."""


@dataclass(frozen=True)
class Transaction:
    """
    Which transaction a batch was, for asking about it later.

    @ivar xid: its transaction id (C{pg_current_xact_id()}).
    @ivar timeline: the server's WAL timeline then. A failover or a restore
        starts a new one, on which the same id may be another transaction.
    """

    xid: str
    timeline: str


class CommitUnknown(Exception):
    """
    The connection failed during a batch's C{COMMIT}: whether it committed is
    not known until PostgreSQL can be asked about its transaction.

    @ivar transaction: the batch's transaction.
    @ivar outcomes: what each write returned, which stands if it committed.
    """

    def __init__(self, transaction: Transaction, outcomes: list[Any]) -> None:
        super().__init__(transaction)
        self.transaction = transaction
        self.outcomes = outcomes


class _InProgress(Exception):
    """PostgreSQL still runs the transaction whose outcome we wait for (its old connection)."""


# A password in a URL (postgresql://user:PASSWORD@host) or as a parameter (password=PASSWORD).
_URL_PASSWORD = re.compile(r"(://[^:@/?#]*:)[^/?#]*@")
_PARAMETER_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")


def redact(url: str) -> str:
    """C{url} with any password in it replaced by C{***}, fit for logs and messages."""
    return _PARAMETER_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url))


def open_postgres(
    url: str,
    reactor: IReactorTime,
    schema: Schema = CURRENT_SCHEMA,
    linger: float = 0.0,
    retry_for: float = RETRY_FOR,
    background_linger: float | None = None,
) -> "PostgresStorage":
    """
    Connect to the database at C{url}, creating or upgrading its schema.

    The schema is prepared now, blocking: this is for start-up, before the
    reactor runs, so that a database that cannot be used stops the server
    with a clear error before it listens.

    @param url: a libpq URL or connection string, e.g.
        C{postgresql://chat@db.example.org:5432/chatroute}.
    @param reactor: the reactor; adbapi needs it to provide C{IReactorCore}
        and C{IReactorThreads} too.
    @param schema: the schema to create or upgrade to; tests give their own.
    @param linger: seconds a batch of writes waits for more.
    @param background_linger: the same for room history alone (by default C{linger}).
    @param retry_for: seconds a request is retried while PostgreSQL is away.
    @raise chatroute.storage.sql.SchemaError: the database is not
        chatroute's, is newer than C{schema}, or cannot be upgraded.
    @raise psycopg.Error: the URL is malformed, or the database cannot be
        reached or written.
    """
    conninfo = _conninfo(url)
    _prepare_database(conninfo, schema, redact(url))
    storage = PostgresStorage(
        _pool(conninfo, reactor), reactor, linger=linger, background_linger=background_linger
    )
    storage.retry_for = retry_for
    return storage


def _conninfo(url: str) -> str:
    """The connection string for C{url}, with chatroute's defaults where it sets none."""
    params = conninfo_to_dict(url)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", "chatroute")
    return make_conninfo("", **params)


def _prepare_database(conninfo: str, schema: Schema, where: str) -> None:
    """Create or upgrade the schema now, blocking, in one transaction."""
    with psycopg.connect(conninfo) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        tables = {name for (name,) in cursor.fetchall()}
        found, scripts = schema.scripts_for(Txn(cursor, POSTGRES), tables, where)
        for script in scripts:
            # No parameters: psycopg sends the script as it is, statements and all.
            cursor.execute(script)
        if scripts:
            cursor.execute(schema.record_version())
        # Leaving the block commits.
    schema.log_prepared(where, found)


class _Connection(Connection):
    """
    adbapi's connection, telling a lost connection by psycopg's own account
    of it: one that is closed, or cannot roll back, is dropped from the pool
    (its thread connects afresh next time), without adbapi's tracebacks,
    which would come with every connection an outage breaks.
    """

    def rollback(self) -> None:
        connection = self._connection
        assert connection is not None, "adbapi connects as the wrapper is made"
        if not connection.closed:
            try:
                connection.rollback()
            except psycopg.Error:
                pass
            else:
                return
        self._pool.disconnect(connection)


class _Pool(ConnectionPool):
    connectionFactory = _Connection


def _pool(conninfo: str, reactor: IReactorTime) -> ConnectionPool:
    """The pool the module docstring describes."""
    return _Pool(
        "psycopg",
        conninfo,
        cp_min=1,
        cp_max=POOL_SIZE,
        cp_reconnect=True,
        cp_reactor=reactor,
    )


class PostgresStorage(SQLStorage):
    """
    L{IStorage} in a PostgreSQL database; get one from L{open_postgres}.

    Its pool's connections must drop themselves when lost (L{_pool}).

    @ivar retry_for: seconds a request is retried while PostgreSQL is away.
    @ivar closing_retry_for: seconds retries go on once the storage is closing.
    @ivar retries: how many times a request was tried again, for monitoring and tests.
    """

    retry_for = RETRY_FOR
    closing_retry_for = CLOSING_RETRY_FOR
    retries = 0
    # When close() was called, and since when PostgreSQL has been unreachable.
    _closing_at: float | None = None
    _unreachable_since: float | None = None

    def close(self) -> Deferred[None]:
        """See L{SQLStorage.close}; retries give up within L{closing_retry_for} from now."""
        if self._closing_at is None:
            self._closing_at = self._clock.seconds()
        return super().close()

    def _run_read(self, read: Callable[[Txn], _T]) -> Deferred[_T]:
        def attempt() -> Deferred[_T]:
            result: Deferred[_T] = self._pool.runWithConnection(_read_txn, read)
            return result

        return Deferred.fromCoroutine(self._retrying(attempt, self._deadline()))

    def _commit_batch(self, operations: list[Operation]) -> Deferred[list[Any]]:
        return Deferred.fromCoroutine(self._commit(operations))

    async def _commit(self, operations: list[Operation]) -> list[Any]:
        """Commit the batch once, however often it has to be tried (the module docstring)."""
        deadline = self._deadline()

        def attempt() -> Deferred[list[Any]]:
            result: Deferred[list[Any]] = self._pool.runWithConnection(_batch_txn, operations)
            return result

        while True:
            try:
                return await self._retrying(attempt, deadline)
            except CommitUnknown as unknown:
                self._unreachable(unknown.__cause__ or unknown)
                if await self._committed(unknown.transaction, deadline):
                    log.info(
                        "a batch of {count} writes committed as its connection was lost",
                        count=len(operations),
                    )
                    return unknown.outcomes
                if self._clock.seconds() >= self._give_up_at(deadline):
                    raise StorageUnavailable("a batch of writes did not commit in time") from None
                log.info(
                    "a batch of {count} writes did not commit as its connection was lost;"
                    " running it again",
                    count=len(operations),
                )

    async def _committed(self, transaction: Transaction, deadline: float) -> bool:
        """Whether C{transaction} committed, once PostgreSQL can tell."""

        def attempt() -> Deferred[bool]:
            result: Deferred[bool] = self._pool.runWithConnection(_committed_txn, transaction)
            return result

        return await self._retrying(attempt, deadline)

    def _deadline(self) -> float:
        return self._clock.seconds() + self.retry_for

    async def _retrying(self, attempt: Callable[[], Deferred[_T]], deadline: float) -> _T:
        """
        What C{attempt} gives, tried again with backoff while it fails for a
        lost connection, until C{deadline}.

        @raise StorageUnavailable: PostgreSQL was away until the deadline.
        """
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                result = await attempt()
            except (*_LOST, _InProgress) as error:
                if not isinstance(error, _InProgress):
                    self._unreachable(error)
                remaining = self._give_up_at(deadline) - self._clock.seconds()
                if remaining <= 0:
                    raise StorageUnavailable(
                        f"PostgreSQL unavailable; request given up: {_first_line(error)}"
                    ) from error
                self.retries += 1
                await deferLater(self._clock, min(delay, remaining))
                if self._closing_at is not None and not self._pool.running:
                    raise StorageClosed() from error
                delay = min(2 * delay, MAX_RETRY_DELAY)
            else:
                self._reachable()
                return result

    def _give_up_at(self, deadline: float) -> float:
        if self._closing_at is None:
            return deadline
        return min(deadline, self._closing_at + self.closing_retry_for)

    def _unreachable(self, error: BaseException) -> None:
        if self._unreachable_since is None:
            self._unreachable_since = self._clock.seconds()
            log.warn(
                "lost PostgreSQL ({error}); retrying each request for up to {seconds:g} s",
                error=_first_line(error),
                seconds=self.retry_for,
            )

    def _reachable(self) -> None:
        if self._unreachable_since is not None:
            log.info(
                "PostgreSQL is back after {seconds:.1f} s",
                seconds=self._clock.seconds() - self._unreachable_since,
            )
            self._unreachable_since = None


def _first_line(error: BaseException) -> str:
    """psycopg's messages go on for lines (hints); the first says what happened."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# On a pool thread: adbapi hands each its connection, commits once it
# returns (nothing is left to commit after _batch_txn), and rolls back
# (dropping a lost connection, see _Connection) if it raises.


def _read_txn(connection: Any, read: Callable[[Txn], _T]) -> _T:
    return read(Txn(connection.cursor(), POSTGRES))


# The server's timeline: the first 8 hex digits of the name of the WAL file it writes.
_TIMELINE = "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"


def _batch_txn(connection: Any, operations: list[Operation]) -> list[Any]:
    txn = Txn(connection.cursor(), POSTGRES)
    txn.execute(f"SELECT pg_current_xact_id()::text, ({_TIMELINE})")
    transaction = Transaction(*txn.fetchone())
    outcomes = run_batch(txn, operations)
    try:
        connection.commit()
    except psycopg.Error as error:
        if connection.closed:
            raise CommitUnknown(transaction, outcomes) from error
        # The server answered: it refused the commit, and rolled the batch back.
        raise
    return outcomes


def _committed_txn(connection: Any, transaction: Transaction) -> bool:
    cursor = connection.cursor()
    cursor.execute(_TIMELINE)
    (timeline,) = cursor.fetchone()
    if timeline != transaction.timeline:
        raise StorageUnavailable(
            f"PostgreSQL is on another timeline (a failover or a restore): whether transaction"
            f" {transaction.xid} committed cannot be known"
        )
    cursor.execute("SELECT pg_xact_status(%s::xid8)", (transaction.xid,))
    (status,) = cursor.fetchone()
    if status == "in progress":
        raise _InProgress(transaction.xid)
    if status is None:
        raise StorageUnavailable(
            f"PostgreSQL no longer knows whether transaction {transaction.xid} committed"
        )
    return bool(status == "committed")
