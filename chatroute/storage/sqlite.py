"""
The default L{IStorage}: one SQLite database file.

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
(below) pays that one fsync per batch instead of per write.

Group commit. Writes go through one L{_BatchWriter}: the writes asked for in
one reactor turn, or while a batch is being committed, are run together in
one transaction, at most L{MAX_BATCH} at a time, one batch at a time. Each
write runs in its own savepoint, so one that fails (a taken name, a full
mailbox) is undone and fails its own Deferred alone; the others commit. A
write's Deferred fires only after its batch has committed.

Reads run straight on the database thread. A read sees every write whose
Deferred has fired; it may or may not see writes still pending.

Schema. The database records its schema version in a C{version} table. A new
database gets C{schema/vN.sql}; an older one is upgraded at open by
C{schema/upgrade-vK-to-vK+1.sql} applied in order, all in one transaction,
after a copy of the old database is saved beside it (see L{Schema}).
"""

import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroute.core.errors import AccountExists, MailboxFull, NoSuchAccount
from chatroute.core.interfaces import Account, HistoryEntry, IStorage, StoredMessage
from chatroute.storage import name_key

SCHEMA_VERSION = 2
"""The schema version this code reads and writes."""

MAX_BATCH = 1000
"""The most writes committed in one transaction."""

MEMORY = ":memory:"
"""The path of a database kept in memory, for tests and for running without a file."""

SERVER_LINGER = 0.01
"""
Seconds the server's batches wait for more writes before they start: at a
thousand room messages a second this puts about ten in each transaction
instead of one or two (the commit, not the row, is what costs), for at most
10 ms more before a stored message is acknowledged.
"""

BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for a lock held by another process (say, a backup) before failing."""

_P = ParamSpec("_P")
_T = TypeVar("_T")

# adbapi hands interactions a Transaction, which passes every attribute on to
# its sqlite3 cursor.
Cursor = sqlite3.Cursor

log = Logger()


class SchemaError(Exception):
    """The database cannot be brought to the schema version this code needs."""


class StorageClosed(Exception):
    """The storage was asked for something after L{SQLiteStorage.close}."""


@dataclass(frozen=True)
class Schema:
    """
    The SQL that creates and upgrades chatroute's database: files in one directory.

    C{vN.sql} creates schema version N in an empty database;
    C{upgrade-vK-to-vM.sql}, with M = K + 1, turns version K into M. The
    scripts must not contain transaction statements: they are run inside
    one transaction, which also records the new version.

    @ivar directory: where the files are.
    @ivar version: the version to create or upgrade to.
    """

    directory: Traversable
    version: int

    def create_script(self) -> str:
        """
        The script creating the current version.

        @raise SchemaError: there is none.
        """
        return self._read(f"v{self.version}.sql")

    def upgrade_scripts(self, found: int) -> list[str]:
        """
        The scripts taking version C{found} to the current one, in order.

        @raise SchemaError: one is missing.
        """
        return [
            self._read(f"upgrade-v{version}-to-v{version + 1}.sql")
            for version in range(found, self.version)
        ]

    def _read(self, name: str) -> str:
        try:
            return self.directory.joinpath(name).read_text(encoding="utf-8")
        except OSError as error:
            raise SchemaError(f"cannot read schema file {name}: {error}") from error


CURRENT_SCHEMA = Schema(files(__package__).joinpath("schema"), SCHEMA_VERSION)
"""The schema files shipped with chatroute."""


def open_sqlite(
    path: str, reactor: IReactorTime, schema: Schema = CURRENT_SCHEMA, linger: float = 0.0
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
        is L{SERVER_LINGER}).
    @raise SchemaError: the database is not chatroute's, is newer than
        C{schema}, or cannot be upgraded.
    @raise sqlite3.Error: the file cannot be opened or written.
    """
    if path != MEMORY:
        _prepare_file(path, schema)

    def prepare(connection: sqlite3.Connection) -> None:
        _configure_connection(connection)
        if path == MEMORY:
            _prepare_schema(connection, schema, path)

    return SQLiteStorage(_pool(path, reactor, prepare), reactor, linger=linger)


def _prepare_file(path: str, schema: Schema) -> None:
    """Create or upgrade the database file at C{path} now, blocking."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
    try:
        _configure_connection(connection)
        try:
            found = _prepare_schema(connection, schema, path)
        except sqlite3.OperationalError:
            # Another process (a node started beside this one) created or
            # upgraded the file between our look at its version and our
            # lock: look again, now that it is done.
            if connection.in_transaction:
                connection.rollback()
            found = _prepare_schema(connection, schema, path)
    finally:
        connection.close()
    if found is None:
        log.info("created {path} with schema v{version}", path=path, version=schema.version)
    elif found < schema.version:
        log.info(
            "upgraded {path} from schema v{old} to v{new}", path=path, old=found, new=schema.version
        )


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
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")


def _prepare_schema(connection: sqlite3.Connection, schema: Schema, path: str) -> int | None:
    """
    Create or upgrade the schema; runs on the database thread.

    @return: the version found, None for a new database.
    """
    found = _stored_version(connection, path)
    if found is None:
        connection.executescript(_in_transaction([schema.create_script()], schema.version))
    elif found > schema.version:
        raise SchemaError(
            f"{path} has schema v{found}, newer than this chatroute's v{schema.version}"
        )
    elif found < schema.version:
        scripts = schema.upgrade_scripts(found)
        if path not in ("", ":memory:"):
            _backup(connection, f"{path}.backup-v{found}")
        connection.executescript(_in_transaction(scripts, schema.version))
    return found


def _stored_version(connection: sqlite3.Connection, path: str) -> int | None:
    """The database's schema version; None if it is empty."""
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    tables = {name for (name,) in rows}
    if not tables:
        return None
    if "version" not in tables:
        raise SchemaError(f"{path} is not a chatroute database: it has no version table")
    row = connection.execute("SELECT version FROM version").fetchone()
    if row is None:
        raise SchemaError(f"{path} has an empty version table")
    version: int = row[0]
    return version


def _in_transaction(scripts: Sequence[str], version: int) -> str:
    """
    One script running C{scripts} in order and recording C{version}, all in
    one transaction.

    The transaction has to be part of the script: C{executescript} commits
    any transaction already open before it runs. The line holding C{;} after
    each file ends a last statement left without one, and a C{--} comment
    the file ends in.
    """
    steps = "\n;\n".join(scripts)
    return (
        f"BEGIN IMMEDIATE;\n{steps}\n;\n"
        f"DELETE FROM version;\nINSERT INTO version (version) VALUES ({version:d});\n"
        "COMMIT;\n"
    )


def _backup(connection: sqlite3.Connection, backup: str) -> None:
    """
    Save a consistent copy of the database at C{backup}, replacing any copy
    an earlier, failed upgrade left there.
    """
    Path(backup).unlink(missing_ok=True)
    connection.execute("VACUUM INTO ?", (backup,))


@implementer(IStorage)
class SQLiteStorage:
    """L{IStorage} in an SQLite database; get one from L{open_sqlite}."""

    def __init__(
        self,
        pool: ConnectionPool,
        clock: IReactorTime,
        max_batch: int = MAX_BATCH,
        linger: float = 0.0,
    ) -> None:
        """
        @param pool: a one-connection pool on a database with the current schema.
        @param clock: schedules the start of each batch.
        @param max_batch: the most writes committed in one transaction.
        @param linger: seconds a batch waits for more writes before it starts.
        """
        self._pool = pool
        self._writer = _BatchWriter(pool, clock, max_batch, linger)
        self._closed = False

    @property
    def commits(self) -> int:
        """How many batch transactions have committed, for monitoring and benchmarks."""
        return self._writer.commits

    def create_account(self, name: str, password_hash: str) -> Deferred[None]:
        """See L{IStorage.create_account}."""
        return self._write(_create_account_txn, name, password_hash)

    def get_account(self, name: str) -> Deferred[Account | None]:
        """See L{IStorage.get_account}."""
        return self._read(_get_account_txn, name)

    def set_password_hash(self, name: str, password_hash: str) -> Deferred[None]:
        """See L{IStorage.set_password_hash}."""
        return self._write(_set_password_hash_txn, name, password_hash)

    def store_message(
        self, recipient: str, sender: str, text: str, sent_at: float, cap: int, action: bool = False
    ) -> Deferred[int]:
        """See L{IStorage.store_message}."""
        return self._write(_store_message_txn, recipient, sender, text, sent_at, cap, action)

    def pending_messages(self, recipient: str) -> Deferred[list[StoredMessage]]:
        """See L{IStorage.pending_messages}."""
        return self._read(_pending_messages_txn, recipient)

    def delete_messages(self, ids: Sequence[int]) -> Deferred[None]:
        """See L{IStorage.delete_messages}."""
        return self._write(_delete_messages_txn, list(ids))

    def append_history(
        self, room: str, sender: str, text: str, sent_at: float, action: bool = False
    ) -> Deferred[None]:
        """See L{IStorage.append_history}."""
        return self._write(_append_history_txn, room, sender, text, sent_at, action)

    def recent_history(self, room: str, limit: int) -> Deferred[list[HistoryEntry]]:
        """See L{IStorage.recent_history}."""
        return self._read(_recent_history_txn, room, limit)

    def close(self) -> Deferred[None]:
        """
        See L{IStorage.close}: commit every write asked for so far, then close
        the database. Any later request, C{close} too, fails with
        L{StorageClosed}.
        """
        if self._closed:
            return fail(StorageClosed())
        self._closed = True
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        await self._writer.drain()
        # No write is in flight now, so joining the database thread is quick.
        self._pool.close()

    def _read(
        self,
        interaction: Callable[Concatenate[Cursor, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        if self._closed:
            return fail(StorageClosed())
        result: Deferred[_T] = self._pool.runInteraction(interaction, *args, **kwargs)
        return result

    def _write(
        self,
        interaction: Callable[Concatenate[Cursor, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        if self._closed:
            return fail(StorageClosed())

        def operation(txn: Cursor) -> _T:
            return interaction(txn, *args, **kwargs)

        return self._writer.submit(operation)


@dataclass(slots=True)
class _Write:
    """A write waiting for its batch: what to run on the cursor, and whom to tell."""

    operation: Callable[[Cursor], Any]
    done: Deferred[Any]


class _BatchWriter:
    """
    Group commit: runs writes in batches, one transaction per batch, one
    batch at a time, firing each write's Deferred after its batch commits.
    """

    def __init__(
        self, pool: ConnectionPool, clock: IReactorTime, max_batch: int, linger: float
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._max_batch = max_batch
        self._linger = linger
        self._queue: deque[_Write] = deque()
        self._start_call: IDelayedCall | None = None
        self._committing = False
        self._idle_waiters: list[Deferred[None]] = []
        self.commits = 0

    def submit(self, operation: Callable[[Cursor], _T]) -> Deferred[_T]:
        """
        Queue a write.

        @param operation: runs the write on the database thread; it may raise
            to fail the write, undoing whatever it did.
        @return: Deferred firing with what C{operation} returned once its batch
            has committed, or failing with what it raised.
        """
        done: Deferred[_T] = Deferred()
        self._queue.append(_Write(operation, done))
        if not self._committing and self._start_call is None:
            self._schedule()
        return done

    def _schedule(self) -> None:
        """
        Start the next batch after the linger, or at least at the end of this
        reactor turn, so that every write asked for meanwhile joins it.
        """
        self._start_call = self._clock.callLater(self._linger, self._start_batch)

    def drain(self) -> Deferred[None]:
        """Deferred firing once no write is queued or being committed."""
        if self._start_call is not None:
            self._start_call.cancel()
            self._start_batch()
        if self._idle():
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _idle(self) -> bool:
        return not (self._committing or self._queue or self._start_call is not None)

    def _start_batch(self) -> None:
        self._start_call = None
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
        self._committing = True
        committed = self._pool.runInteraction(_run_batch, [write.operation for write in batch])
        committed.addBoth(self._batch_done, batch)

    def _batch_done(self, outcomes: list[Any] | Failure, batch: list[_Write]) -> None:
        self._committing = False
        if self._queue:
            # Writes that came in during the commit; their batch goes first,
            # so that it commits while this one's callbacks run.
            if self._linger:
                self._schedule()
            else:
                self._start_batch()
        if isinstance(outcomes, Failure):
            log.failure("committing a batch of {count} writes failed", outcomes, count=len(batch))
            outcomes = [outcomes] * len(batch)
        else:
            self.commits += 1
        for write, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Failure):
                write.done.errback(outcome)
            else:
                write.done.callback(outcome)
        if self._idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)


def _run_batch(txn: Cursor, operations: Sequence[Callable[[Cursor], Any]]) -> list[Any]:
    """
    Run writes in one transaction, each in a savepoint (database thread).

    A write that raises is rolled back to its savepoint alone, and its
    L{Failure} is its outcome. An error the savepoint cannot contain (the
    disk, say) escapes, and adbapi rolls the whole batch back.

    @return: each write's result or L{Failure}, in order.
    """
    txn.execute("BEGIN IMMEDIATE")
    outcomes: list[Any] = []
    for operation in operations:
        txn.execute("SAVEPOINT write")
        try:
            outcomes.append(operation(txn))
        except Exception:
            txn.execute("ROLLBACK TO write")
            outcomes.append(Failure())
        txn.execute("RELEASE write")
    return outcomes


# The operations, synapse-style: each runs on the database thread with the
# cursor first, and raises a chatroute error for a refused write.


def _create_account_txn(txn: Cursor, name: str, password_hash: str) -> None:
    try:
        txn.execute(
            "INSERT INTO accounts (name_key, name, password_hash) VALUES (?, ?, ?)",
            (name_key(name), name, password_hash),
        )
    except sqlite3.IntegrityError:
        raise AccountExists(name) from None


def _get_account_txn(txn: Cursor, name: str) -> Account | None:
    txn.execute("SELECT name, password_hash FROM accounts WHERE name_key = ?", (name_key(name),))
    row = txn.fetchone()
    return None if row is None else Account(*row)


def _set_password_hash_txn(txn: Cursor, name: str, password_hash: str) -> None:
    txn.execute(
        "UPDATE accounts SET password_hash = ? WHERE name_key = ?", (password_hash, name_key(name))
    )
    if txn.rowcount == 0:
        raise NoSuchAccount(name)


def _store_message_txn(
    txn: Cursor,
    recipient: str,
    sender: str,
    text: str,
    sent_at: float,
    cap: int,
    action: bool = False,
) -> int:
    key = name_key(recipient)
    txn.execute("SELECT count(*) FROM messages WHERE recipient_key = ?", (key,))
    (kept,) = txn.fetchone()
    if kept >= cap:
        raise MailboxFull(recipient)
    txn.execute(
        "INSERT INTO messages (recipient_key, recipient, sender, text, sent_at, action)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (key, recipient, sender, text, sent_at, action),
    )
    message_id: int = txn.fetchone()[0]
    return message_id


def _pending_messages_txn(txn: Cursor, recipient: str) -> list[StoredMessage]:
    txn.execute(
        "SELECT id, recipient, sender, text, sent_at, action FROM messages"
        " WHERE recipient_key = ? ORDER BY id",
        (name_key(recipient),),
    )
    return [
        StoredMessage(message_id, to, sender, text, sent_at, bool(action))
        for message_id, to, sender, text, sent_at, action in txn.fetchall()
    ]


def _delete_messages_txn(txn: Cursor, ids: list[int]) -> None:
    txn.executemany("DELETE FROM messages WHERE id = ?", [(message_id,) for message_id in ids])


def _append_history_txn(
    txn: Cursor, room: str, sender: str, text: str, sent_at: float, action: bool = False
) -> None:
    txn.execute(
        "INSERT INTO history (room_key, room, sender, text, sent_at, action)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (name_key(room), room, sender, text, sent_at, action),
    )


def _recent_history_txn(txn: Cursor, room: str, limit: int) -> list[HistoryEntry]:
    # The newest `limit` by the (room_key, id) index, then put oldest first.
    txn.execute(
        "SELECT room, sender, text, sent_at, action FROM"
        " (SELECT id, room, sender, text, sent_at, action FROM history"
        "  WHERE room_key = ? ORDER BY id DESC LIMIT max(?, 0))"
        " ORDER BY id",
        (name_key(room), limit),
    )
    return [
        HistoryEntry(room, sender, text, sent_at, bool(action))
        for room, sender, text, sent_at, action in txn.fetchall()
    ]
