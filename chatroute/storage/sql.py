"""
What the SQL stores share: one text of every query, the versioned schema,
and L{SQLStorage}, the L{IStorage} they both are.

One SQL text. Every query is written once, in the C{*_txn} functions below,
with C{?} placeholders, and runs on a L{Txn}: a DB-API cursor with the
L{Dialect} of its database, which turns C{?} into the driver's placeholder
(C{%s} for psycopg) and the driver's C{IntegrityError} into
L{IntegrityViolation}, as Synapse's database engines do. The queries keep to
SQL that SQLite and PostgreSQL read alike (C{RETURNING}, savepoints,
subqueries with an alias); where they differ (how an id is generated, what a
boolean column is) is the schema's business, and each database has its own
scripts (L{Schema}).

Versions. A database records its schema version in a C{version} table. A new
one gets C{vN.sql}; an older one is upgraded by C{upgrade-vK-to-vK+1.sql}
applied in order, in one transaction that also records the new version.
"""

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeAlias, TypeVar

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from chatroute.core.errors import AccountExists, MailboxFull, NoSuchAccount
from chatroute.core.interfaces import Account, HistoryEntry, IStorage, StoredMessage
from chatroute.storage import name_key
from chatroute.storage.batch import MAX_BATCH, BatchWriter, Insert, Operation

SCHEMA_VERSION = 2
"""The schema version this code reads and writes, in every database."""

_SCHEMAS = files(__package__).joinpath("schema")

_P = ParamSpec("_P")
_T = TypeVar("_T")

# A *_txn function below: a cursor first, then its own arguments.
_Work: TypeAlias = Callable[Concatenate["Txn", _P], _T]

log = Logger()


class SchemaError(Exception):
    """The database cannot be brought to the schema version this code needs."""


class StorageClosed(Exception):
    """The storage was asked for something after L{SQLStorage.close}."""


class IntegrityViolation(Exception):
    """A statement broke a constraint of the schema (a unique key, mostly)."""


class DBCursor(Protocol):
    """The part of a DB-API 2 cursor that L{Txn} uses."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""

    def execute(self, operation: Any, parameters: Any = ..., /) -> object:
        """Run one statement."""

    def executemany(self, operation: Any, parameters: Any, /) -> object:
        """Run one statement once for each set of parameters."""

    def fetchone(self) -> Any:
        """The next row of the last query's result, or None."""

    def fetchall(self) -> Any:
        """The rest of the last query's result."""


@dataclass(frozen=True)
class Dialect:
    """
    How one database's driver differs from the SQL text of the C{*_txn} functions.

    @ivar name: the database's name, for messages.
    @ivar placeholder: the driver's placeholder for C{?}.
    @ivar integrity_error: the driver's exception for a broken constraint.
    @ivar begin: the statement opening a write transaction, or None where
        the driver opens one itself.
    """

    name: str
    placeholder: str
    integrity_error: type[Exception]
    begin: str | None


class Txn:
    """
    A cursor of one database, speaking the SQL text of this module.

    @ivar dialect: the cursor's database.
    """

    __slots__ = ("_cursor", "dialect")

    def __init__(self, cursor: DBCursor, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        placeholder = self.dialect.placeholder
        return sql if placeholder == "?" else sql.replace("?", placeholder)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        """
        Run C{sql}, with C{?} for each of C{parameters}.

        @raise IntegrityViolation: it broke a constraint.
        """
        try:
            self._cursor.execute(self._sql(sql), parameters)
        except self.dialect.integrity_error as error:
            raise IntegrityViolation(str(error)) from error

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> None:
        """Run C{sql} once for each sequence of C{parameters}."""
        self._cursor.executemany(self._sql(sql), parameters)

    def fetchone(self) -> Any:
        """The next row of the last query's result, or None."""
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        """The rest of the last query's result."""
        return list(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        return self._cursor.rowcount


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

    @classmethod
    def shipped(cls, database: str) -> "Schema":
        """The current schema of one database as chatroute ships it (C{schema/DATABASE/})."""
        return cls(_SCHEMAS.joinpath(database), SCHEMA_VERSION)

    def scripts_for(
        self, txn: Txn, tables: Collection[str], where: str
    ) -> tuple[int | None, list[str]]:
        """
        The database's version, and the scripts to run on it, in order and
        in one transaction followed by L{record_version}: none if it is
        current.

        @param txn: a cursor on the database, to read its version.
        @param tables: the names of the database's tables.
        @param where: the database, for messages.
        @return: the version found (None for an empty database), and the scripts.
        @raise SchemaError: the database is not chatroute's, is newer than
            this schema, or a script is missing.
        """
        found = _stored_version(txn, tables, where)
        if found is None:
            return found, [self.create_script()]
        if found > self.version:
            raise SchemaError(
                f"{where} has schema v{found}, newer than this chatroute's v{self.version}"
            )
        return found, self.upgrade_scripts(found)

    def record_version(self) -> str:
        """The statements recording, after the scripts, that the database is at this version."""
        return f"DELETE FROM version;\nINSERT INTO version (version) VALUES ({self.version:d});\n"

    def log_prepared(self, where: str, found: int | None) -> None:
        """Say what preparing a database of version C{found} did: created, upgraded, or nothing."""
        if found is None:
            log.info("created {where} with schema v{version}", where=where, version=self.version)
        elif found < self.version:
            log.info(
                "upgraded {where} from schema v{old} to v{new}",
                where=where,
                old=found,
                new=self.version,
            )

    def _read(self, name: str) -> str:
        try:
            return self.directory.joinpath(name).read_text(encoding="utf-8")
        except OSError as error:
            raise SchemaError(f"cannot read schema file {name}: {error}") from error


def _stored_version(txn: Txn, tables: Collection[str], where: str) -> int | None:
    """
    The schema version of a database with these C{tables}; None if it has none.

    @raise SchemaError: it is not chatroute's.
    """
    if not tables:
        return None
    if "version" not in tables:
        raise SchemaError(f"{where} is not a chatroute database: it has no version table")
    txn.execute("SELECT version FROM version")
    row = txn.fetchone()
    if row is None:
        raise SchemaError(f"{where} has an empty version table")
    version: int = row[0]
    return version


@implementer(IStorage)
class SQLStorage:
    """
    L{IStorage} in an SQL database on an adbapi pool: the requests, closing,
    and group commit of writes through a L{BatchWriter}. A subclass runs
    reads and batches on its database's threads (L{_run_read},
    L{_commit_batch}).

    Reads run as soon as asked. A read sees every write whose Deferred has
    fired; it may or may not see writes still pending.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        clock: IReactorTime,
        max_batch: int = MAX_BATCH,
        linger: float = 0.0,
        background_linger: float | None = None,
    ) -> None:
        """
        @param pool: the adbapi pool of connections to a database with the
            current schema.
        @param clock: schedules the start of each batch.
        @param max_batch: the most writes committed in one transaction.
        @param linger: seconds a batch waits for more writes before it starts.
        @param background_linger: the same for a batch of room history alone
            (by default C{linger}).
        """
        self._pool = pool
        self._clock = clock
        self._writer = BatchWriter(self._commit_batch, clock, max_batch, linger, background_linger)
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
        """See L{IStorage.append_history}: a background write (nobody waits for it)."""
        entry = history_insert(room, sender, text, sent_at, action)
        return self._unless_closed(partial(self._writer.submit, background=True), entry)

    def recent_history(self, room: str, limit: int) -> Deferred[list[HistoryEntry]]:
        """See L{IStorage.recent_history}; it sees the history waiting to be written too."""
        self._writer.hurry()
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
        # No write is in flight now, so joining the database's threads is quick.
        self._pool.close()

    def _commit_batch(self, operations: list[Operation]) -> Deferred[list[Any]]:
        """Run and commit one batch of writes (see L{chatroute.storage.batch.CommitBatch})."""
        raise NotImplementedError

    def _run_read(self, read: Callable[[Txn], _T]) -> Deferred[_T]:
        """Run C{read} on a L{Txn} on a database thread, in a transaction of its own."""
        raise NotImplementedError

    def _read(self, work: _Work[_P, _T], *args: _P.args, **kw: _P.kwargs) -> Deferred[_T]:
        """Run C{work} with these arguments as a read (L{_run_read})."""
        return self._unless_closed(self._run_read, _bind(work, *args, **kw))

    def _write(self, work: _Work[_P, _T], *args: _P.args, **kw: _P.kwargs) -> Deferred[_T]:
        """Queue C{work} with these arguments as a write, for the next batch."""
        return self._unless_closed(self._writer.submit, _bind(work, *args, **kw))

    def _unless_closed(
        self, run: Callable[[Callable[[Txn], _T]], Deferred[_T]], work: Callable[[Txn], _T]
    ) -> Deferred[_T]:
        return fail(StorageClosed()) if self._closed else run(work)


def _bind(work: _Work[_P, _T], *args: _P.args, **kw: _P.kwargs) -> Callable[[Txn], _T]:
    """C{work} with its arguments given, waiting only for its cursor."""

    def bound(txn: Txn) -> _T:
        return work(txn, *args, **kw)

    return bound


# The operations, synapse-style: each runs on a database thread with the
# cursor first, and raises a chatroute error for a refused write.


def _create_account_txn(txn: Txn, name: str, password_hash: str) -> None:
    try:
        txn.execute(
            "INSERT INTO accounts (name_key, name, password_hash) VALUES (?, ?, ?)",
            (name_key(name), name, password_hash),
        )
    except IntegrityViolation:
        raise AccountExists(name) from None


def _get_account_txn(txn: Txn, name: str) -> Account | None:
    txn.execute("SELECT name, password_hash FROM accounts WHERE name_key = ?", (name_key(name),))
    row = txn.fetchone()
    return None if row is None else Account(*row)


def _set_password_hash_txn(txn: Txn, name: str, password_hash: str) -> None:
    txn.execute(
        "UPDATE accounts SET password_hash = ? WHERE name_key = ?", (password_hash, name_key(name))
    )
    if txn.rowcount == 0:
        raise NoSuchAccount(name)


def _store_message_txn(
    txn: Txn,
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


def _pending_messages_txn(txn: Txn, recipient: str) -> list[StoredMessage]:
    txn.execute(
        "SELECT id, recipient, sender, text, sent_at, action FROM messages"
        " WHERE recipient_key = ? ORDER BY id",
        (name_key(recipient),),
    )
    return [
        StoredMessage(message_id, to, sender, text, sent_at, bool(action))
        for message_id, to, sender, text, sent_at, action in txn.fetchall()
    ]


def _delete_messages_txn(txn: Txn, ids: list[int]) -> None:
    txn.executemany("DELETE FROM messages WHERE id = ?", [(message_id,) for message_id in ids])


def history_insert(
    room: str, sender: str, text: str, sent_at: float, action: bool = False
) -> Insert:
    """The write adding one message to a room's history."""
    return Insert(
        "INSERT INTO history (room_key, room, sender, text, sent_at, action)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (name_key(room), room, sender, text, sent_at, action),
    )


def _recent_history_txn(txn: Txn, room: str, limit: int) -> list[HistoryEntry]:
    # The newest `limit` by the (room_key, id) index, then put oldest first.
    txn.execute(
        "SELECT room, sender, text, sent_at, action FROM"
        " (SELECT id, room, sender, text, sent_at, action FROM history"
        "  WHERE room_key = ? ORDER BY id DESC LIMIT ?) AS recent"
        " ORDER BY id",
        (name_key(room), max(limit, 0)),
    )
    return [
        HistoryEntry(room, sender, text, sent_at, bool(action))
        for room, sender, text, sent_at, action in txn.fetchall()
    ]
