"""
The default L{IStorage}: one SQLite database file.

The queries, the schema versions and group commit are those of every SQL
store (L{chatroute.storage.sql}, L{chatroute.storage.batch}); this module
holds what is SQLite's own.

Threads. Every statement runs on the single thread of an adbapi
C{ConnectionPool} with C{cp_min=cp_max=1}, never on the reactor thread, so a
slow disk delays storage but never chat. One thread means one connection:
SQLite lets one writer in at a time anyway, our own connections never wait
for each other's locks, and C{":memory:"} is one database rather than one per
connection.

Durability. The journal is a write-ahead log (readers do not block the
writer) with C{synchronous=FULL}: every commit is fsynced before its
Deferreds fire, so an acknowledged write survives not only C{kill -9} of the
server (which C{NORMAL} would already survive, the log being in the page
cache) but also a crash of the operating system or a power cut. Group commit
pays that one fsync per batch instead of per write.

Schema. C{schema/sqlite/}: an older database is upgraded at open, all in one
transaction, after a copy of the old database is saved beside it. That
transaction holds the write lock from before the version is read until the
new one is recorded, so nodes started together on one file take turns: one
creates or upgrades it, and keeps the copy; the others wait for it and find
it done.
"""

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from time import monotonic, sleep
from typing import Any, TypeVar

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from chatroute.storage.batch import Operation, run_batch
from chatroute.storage.sql import Dialect, Schema, SQLStorage, Txn

MEMORY = ":memory:"
"""The path of a database kept in memory, for tests and for running without a file."""

BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for a lock held by another process (say, a backup) before failing."""

_WAL_RETRY_PAUSE = 0.01
"""Seconds between tries at switching to WAL a file another process writes (L{_use_wal})."""

SQLITE = Dialect("SQLite", "?", sqlite3.IntegrityError, begin="BEGIN IMMEDIATE")
"""SQLite's sqlite3 driver: C{?} placeholders, and transactions begun here (see L{_pool})."""

CURRENT_SCHEMA = Schema.shipped("sqlite")
"""The SQLite schema files shipped with chatroute."""

_T = TypeVar("_T")

# adbapi hands interactions a Transaction, which passes every attribute on to
# its sqlite3 cursor.
Cursor = sqlite3.Cursor


def open_sqlite(
    path: str,
    reactor: IReactorTime,
    schema: Schema = CURRENT_SCHEMA,
    linger: float = 0.0,
    background_linger: float | None = None,
) -> "SQLiteStorage":
    """
    Open the database at C{path}, creating or upgrading it as needed.

    A file is created or upgraded now, blocking: this is for start-up,
    before the reactor runs, so that a database that cannot be used stops
    the server with a clear error before it listens. C{":memory:"}, a
    database that lives as long as the storage, is created on the storage's
    own connection, as its thread starts.

    @param reactor: the reactor; besides L{IReactorTime}, adbapi needs it to
        provide C{IReactorCore} and C{IReactorThreads}. The storage's thread
        starts with it; what is asked of the storage before waits for that.
    @param schema: the schema to create or upgrade to; tests give their own.
    @param linger: seconds a batch of writes waits for more (the server's
        is L{chatroute.storage.batch.SERVER_LINGER}).
    @param background_linger: the same for room history alone (by default
        C{linger}; the server's is L{chatroute.storage.batch.SERVER_BACKGROUND_LINGER}).
    @raise chatroute.storage.sql.SchemaError: the database is not
        chatroute's, is newer than C{schema}, or cannot be upgraded.
    @raise sqlite3.Error: the file cannot be opened or written.
    """
    if path != MEMORY:
        _prepare_file(path, schema)

    def prepare(connection: sqlite3.Connection) -> None:
        _configure_connection(connection)
        if path == MEMORY:
            _prepare_schema(connection, schema, path)

    return SQLiteStorage(
        _pool(path, reactor, prepare), reactor, linger=linger, background_linger=background_linger
    )


def _prepare_file(path: str, schema: Schema) -> None:
    """Create or upgrade the database file at C{path} now, blocking."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
    try:
        _configure_connection(connection)
        found = _prepare_schema(connection, schema, path)
    finally:
        connection.close()
    schema.log_prepared(path, found)


def _pool(
    path: str, reactor: IReactorTime, prepare: Callable[[sqlite3.Connection], None]
) -> ConnectionPool:
    """The one-thread, one-connection pool the module docstring describes."""
    return ConnectionPool(
        "sqlite3",
        path,
        check_same_thread=False,
        # No implicit transactions: every transaction here is begun explicitly.
        isolation_level=None,
        timeout=BUSY_TIMEOUT,
        cp_min=1,
        cp_max=1,
        cp_openfun=prepare,
        cp_reactor=reactor,
    )


def _configure_connection(connection: sqlite3.Connection) -> None:
    """Set up a new connection (adbapi's C{cp_openfun}); the module docstring says why."""
    _use_wal(connection)
    connection.execute("PRAGMA synchronous = FULL")


def _use_wal(connection: sqlite3.Connection) -> None:
    """
    Switch the database to a write-ahead log, waiting up to L{BUSY_TIMEOUT}
    for other processes' locks.

    Switching a file that is not yet in WAL (a new one) reads it, then
    writes it. A connection holding a read lock that asks for the write lock
    while another process holds it, or waits for it, is refused at once,
    without the busy timeout's wait: waiting could deadlock, the other
    waiting for this one's read lock to go. Nodes started together on a new
    file all switch it at once, so all but one would fail with "database is
    locked"; here the refusal is tried again instead, the read lock let go,
    as the busy timeout would. A file already in WAL is only read, which
    waits as usual.
    """
    give_up_at = monotonic() + BUSY_TIMEOUT
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or monotonic() >= give_up_at:
                raise
        sleep(_WAL_RETRY_PAUSE)


def _prepare_schema(connection: sqlite3.Connection, schema: Schema, path: str) -> int | None:
    """
    Create or upgrade the schema in one transaction; runs on the database thread.

    The transaction takes the write lock before the version is read, so
    another process cannot create or upgrade the database between that look
    and the scripts: it waits (up to L{BUSY_TIMEOUT}) until this one's
    transaction is over, then finds the database current.

    @return: the version found, None for a new database.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        tables = {name for (name,) in rows}
        found, scripts = schema.scripts_for(Txn(connection.cursor(), SQLITE), tables, path)
        if scripts:
            if found is not None and path not in ("", MEMORY):
                _backup(path, f"{path}.backup-v{found}")
            for script in [*scripts, schema.record_version()]:
                for statement in _statements(script):
                    connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        # An error may have ended the transaction already.
        if connection.in_transaction:
            connection.rollback()
        raise
    return found


def _statements(script: str) -> Iterator[str]:
    """
    The statements of C{script}, one by one, to run in a transaction begun
    before them (C{executescript} would commit it first).

    A statement ends at a C{;} after which it is complete to
    L{sqlite3.complete_statement}: not one in a string, a comment or a
    trigger's body. A last statement may lack its C{;}, and a file may end
    in a C{--} comment.
    """
    *ended, rest = script.split(";")
    statement = ""
    for piece in ended:
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    statement += rest
    if statement.strip():
        yield statement


def _backup(path: str, backup: str) -> None:
    """
    Save a consistent copy of the database at C{path} at C{backup},
    replacing any copy an earlier, failed upgrade left there.

    Called inside the upgrade's transaction, before it writes; C{VACUUM}
    cannot run in a transaction, so the copy is made on a connection of its
    own. That one reads the last committed state, which is the one being
    upgraded: no other process can commit while the upgrade holds the write
    lock, and the write-ahead log lets readers in meanwhile.
    """
    Path(backup).unlink(missing_ok=True)
    reader = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
    try:
        reader.execute("VACUUM INTO ?", (backup,))
    finally:
        reader.close()


class SQLiteStorage(SQLStorage):
    """
    L{IStorage} in an SQLite database, on a one-connection pool; get one
    from L{open_sqlite}.
    """

    def _commit_batch(self, operations: list[Operation]) -> Deferred[list[Any]]:
        # adbapi commits once the interaction returns, and rolls back if it raises.
        committed: Deferred[list[Any]] = self._pool.runInteraction(_batch_txn, operations)
        return committed

    def _run_read(self, read: Callable[[Txn], _T]) -> Deferred[_T]:
        result: Deferred[_T] = self._pool.runInteraction(_read_txn, read)
        return result


def _batch_txn(cursor: Cursor, operations: list[Operation]) -> list[Any]:
    return run_batch(Txn(cursor, SQLITE), operations)


def _read_txn(cursor: Cursor, read: Callable[[Txn], _T]) -> _T:
    return read(Txn(cursor, SQLITE))
