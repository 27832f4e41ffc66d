"""
The storage contract, run against every IStorage; then SQLite's own promises:
group commit, the versioned schema, and durability across close and kill -9.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from chatroute.core import errors
from chatroute.core.interfaces import Account, HistoryEntry, IStorage, StoredMessage
from chatroute.storage import sqlite as sqlite_storage
from chatroute.storage.memory import MemoryStorage
from chatroute.storage.sqlite import (
    CURRENT_SCHEMA,
    SCHEMA_VERSION,
    Schema,
    SchemaError,
    SQLiteStorage,
    StorageClosed,
    _append_history_txn,
    _run_batch,
    open_sqlite,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite-memory", "sqlite-file"])
async def storage(request, tmp_path):
    if request.param == "memory":
        store = MemoryStorage()
    elif request.param == "sqlite-memory":
        store = open_sqlite(":memory:", reactor)
    else:
        store = open_sqlite(str(tmp_path / "chat.db"), reactor)
    yield store
    await store.close()


async def outcomes(deferreds: list[Deferred]) -> list[object]:
    """Each Deferred's result, or the type of the exception it failed with."""
    results = await DeferredList(deferreds, consumeErrors=True)
    return [value if ok else value.type for ok, value in results]


# The contract: every IStorage.


def test_provides_istorage(storage):
    assert verifyObject(IStorage, storage)


@pytest_twisted.ensureDeferred
async def test_create_and_get_account_in_any_case(storage):
    await storage.create_account("Alice", "hash-1")
    for typed in ("Alice", "alice", "ALICE"):
        assert await storage.get_account(typed) == Account("Alice", "hash-1")


@pytest_twisted.ensureDeferred
async def test_get_unknown_account(storage):
    assert await storage.get_account("nobody") is None


@pytest_twisted.ensureDeferred
async def test_duplicate_account_in_another_case(storage):
    await storage.create_account("Alice", "hash-1")
    with pytest.raises(errors.AccountExists, match="ALICE is already registered"):
        await storage.create_account("ALICE", "hash-2")
    assert await storage.get_account("alice") == Account("Alice", "hash-1")


@pytest_twisted.ensureDeferred
async def test_only_ascii_letters_are_folded(storage):
    await storage.create_account("Émile", "hash-1")
    await storage.create_account("émile", "hash-2")
    assert await storage.get_account("ÉMILE") == Account("Émile", "hash-1")
    assert await storage.get_account("émile") == Account("émile", "hash-2")


@pytest_twisted.ensureDeferred
async def test_set_password_hash_keeps_name_as_registered(storage):
    await storage.create_account("Alice", "hash-1")
    await storage.set_password_hash("ALICE", "hash-2")
    assert await storage.get_account("alice") == Account("Alice", "hash-2")


@pytest_twisted.ensureDeferred
async def test_set_password_hash_of_unknown_account(storage):
    with pytest.raises(errors.NoSuchAccount, match="no such account: nobody"):
        await storage.set_password_hash("nobody", "hash")


@pytest_twisted.ensureDeferred
async def test_pending_messages_oldest_first_for_recipient_in_any_case(storage):
    first = await storage.store_message("Bob", "alice", "one", 10.0, cap=10)
    await storage.store_message("carol", "alice", "for carol", 11.0, cap=10)
    second = await storage.store_message("BOB", "dave", "two", 12.5, cap=10)
    assert first < second
    assert await storage.pending_messages("bob") == [
        StoredMessage(first, "Bob", "alice", "one", 10.0),
        StoredMessage(second, "BOB", "dave", "two", 12.5),
    ]
    assert await storage.pending_messages("nobody") == []


@pytest_twisted.ensureDeferred
async def test_delete_messages(storage):
    ids = [await storage.store_message("bob", "alice", str(n), float(n), cap=10) for n in range(4)]
    await storage.delete_messages([ids[0], ids[2], 999_999])
    assert [m.text for m in await storage.pending_messages("bob")] == ["1", "3"]
    await storage.delete_messages([])
    assert [m.text for m in await storage.pending_messages("bob")] == ["1", "3"]


@pytest_twisted.ensureDeferred
async def test_message_ids_are_not_reused_after_deletion(storage):
    old = await storage.store_message("bob", "alice", "old", 1.0, cap=10)
    await storage.delete_messages([old])
    new = await storage.store_message("bob", "alice", "new", 2.0, cap=10)
    assert new > old
    await storage.delete_messages([old])
    assert [m.text for m in await storage.pending_messages("bob")] == ["new"]


@pytest_twisted.ensureDeferred
async def test_mailbox_cap(storage):
    kept = [await storage.store_message("bob", "alice", str(n), 1.0, cap=2) for n in range(2)]
    with pytest.raises(errors.MailboxFull, match="BOB is offline"):
        await storage.store_message("BOB", "alice", "too many", 1.0, cap=2)
    assert [m.text for m in await storage.pending_messages("bob")] == ["0", "1"]
    # The cap is per recipient, and delivering makes room again.
    await storage.store_message("carol", "alice", "fine", 1.0, cap=2)
    await storage.delete_messages(kept[:1])
    await storage.store_message("bob", "alice", "2", 1.0, cap=2)
    assert [m.text for m in await storage.pending_messages("bob")] == ["1", "2"]


@pytest_twisted.ensureDeferred
async def test_cap_of_zero_keeps_nothing(storage):
    with pytest.raises(errors.MailboxFull):
        await storage.store_message("bob", "alice", "no", 1.0, cap=0)
    assert await storage.pending_messages("bob") == []


@pytest_twisted.ensureDeferred
async def test_recent_history_is_the_last_entries_oldest_first(storage):
    for n in range(5):
        await storage.append_history("#Room", "alice", f"m{n}", float(n))
    assert await storage.recent_history("#room", 3) == [
        HistoryEntry("#Room", "alice", f"m{n}", float(n)) for n in (2, 3, 4)
    ]


@pytest_twisted.ensureDeferred
async def test_recent_history_limits(storage):
    for n in range(3):
        await storage.append_history("#room", "alice", f"m{n}", float(n))
    assert [e.text for e in await storage.recent_history("#room", 10)] == ["m0", "m1", "m2"]
    assert await storage.recent_history("#room", 0) == []
    assert await storage.recent_history("#empty", 5) == []


@pytest_twisted.ensureDeferred
async def test_history_is_per_room_in_any_case(storage):
    await storage.append_history("#a", "alice", "in a", 1.0)
    await storage.append_history("#B", "bob", "in b", 2.0)
    await storage.append_history("#A", "carol", "in A", 3.0)
    assert await storage.recent_history("#A", 10) == [
        HistoryEntry("#a", "alice", "in a", 1.0),
        HistoryEntry("#A", "carol", "in A", 3.0),
    ]
    assert await storage.recent_history("#b", 10) == [HistoryEntry("#B", "bob", "in b", 2.0)]


@pytest_twisted.ensureDeferred
async def test_actions_are_kept_as_actions(storage):
    message_id = await storage.store_message("bob", "alice", "waves", 1.0, 10, True)
    await storage.append_history("#a", "alice", "says", 2.0)
    await storage.append_history("#a", "alice", "nods", 3.0, True)
    assert await storage.pending_messages("bob") == [
        StoredMessage(message_id, "bob", "alice", "waves", 1.0, True)
    ]
    assert [(e.text, e.action) for e in await storage.recent_history("#a", 5)] == [
        ("says", False),
        ("nods", True),
    ]


@pytest_twisted.ensureDeferred
async def test_failing_writes_fail_alone(storage):
    await storage.store_message("full", "x", "kept", 1.0, cap=1)
    # All asked for in one turn: for SQLite, one batch.
    results = await outcomes(
        [
            storage.create_account("alice", "hash"),
            storage.create_account("ALICE", "other"),
            storage.store_message("full", "x", "refused", 2.0, cap=1),
            storage.store_message("bob", "x", "fine", 3.0, cap=1),
            storage.store_message("bob", "x", "refused", 4.0, cap=1),
            storage.set_password_hash("nobody", "hash"),
            storage.append_history("#room", "x", "fine", 5.0),
        ]
    )
    assert results[0] is None
    assert results[1] is errors.AccountExists
    assert results[2] is errors.MailboxFull
    assert isinstance(results[3], int)
    assert results[4:] == [errors.MailboxFull, errors.NoSuchAccount, None]
    assert await storage.get_account("Alice") == Account("alice", "hash")
    assert [m.text for m in await storage.pending_messages("full")] == ["kept"]
    assert [m.text for m in await storage.pending_messages("bob")] == ["fine"]
    assert [e.text for e in await storage.recent_history("#room", 5)] == ["fine"]


# SQLite: group commit, seen through a pool that runs each transaction only
# when the test says.


class SteppedPool:
    """
    Stands in for the adbapi pool: each interaction waits in C{waiting} until
    L{run_next} runs it on a real connection and fires its Deferred.
    """

    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:", isolation_level=None)
        self.connection.executescript(CURRENT_SCHEMA.create_script())
        self.waiting: list[tuple[object, tuple, Deferred]] = []
        self.closed = False

    def runInteraction(self, interaction, *args):
        done = Deferred()
        self.waiting.append((interaction, args, done))
        return done

    def batch_sizes(self) -> list[int]:
        """How many writes each waiting batch has."""
        return [len(args[0]) for _, args, _ in self.waiting]

    def run_next(self, fail_with: Exception | None = None) -> None:
        interaction, args, done = self.waiting.pop(0)
        if fail_with is not None:
            done.errback(fail_with)
            return
        cursor = self.connection.cursor()
        try:
            result = interaction(cursor, *args)
        except Exception:
            self.connection.rollback()
            done.errback()
        else:
            self.connection.commit()
            done.callback(result)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pool():
    return SteppedPool()


def stepped(pool: SteppedPool, clock: Clock, max_batch: int = 1000) -> SQLiteStorage:
    return SQLiteStorage(pool, clock, max_batch)


def test_writes_of_one_turn_share_one_transaction(pool, clock):
    storage = stepped(pool, clock)
    writes = [storage.append_history("#room", "alice", str(n), 1.0) for n in range(3)]
    assert pool.batch_sizes() == []
    clock.advance(0)
    assert pool.batch_sizes() == [3]
    assert not any(write.called for write in writes)
    pool.run_next()
    assert all(write.called for write in writes)
    assert storage.commits == 1


def test_writes_asked_for_during_a_commit_form_the_next_batch(pool, clock):
    storage = stepped(pool, clock)
    first = storage.append_history("#room", "alice", "first", 1.0)
    clock.advance(0)
    later = [storage.append_history("#room", "alice", str(n), 1.0) for n in range(2)]
    clock.advance(0)
    assert pool.batch_sizes() == [1]  # one batch at a time
    pool.run_next()
    assert first.called
    assert pool.batch_sizes() == [2]  # started at once, without waiting a turn
    pool.run_next()
    assert all(write.called for write in later)
    assert storage.commits == 2


def test_a_lingering_writer_gathers_the_writes_of_several_turns(pool, clock):
    storage = SQLiteStorage(pool, clock, linger=0.01)
    first = [storage.append_history("#room", "alice", "a", 1.0)]
    clock.advance(0.005)
    first.append(storage.append_history("#room", "alice", "b", 1.0))
    assert pool.batch_sizes() == []
    clock.advance(0.005)
    assert pool.batch_sizes() == [2]
    later = storage.append_history("#room", "alice", "c", 1.0)
    pool.run_next()
    assert all(write.called for write in first)
    assert pool.batch_sizes() == [], "the next batch lingers too"
    clock.advance(0.01)
    assert pool.batch_sizes() == [1]
    pool.run_next()
    assert later.called
    assert storage.commits == 2


def test_batches_are_bounded(pool, clock):
    storage = stepped(pool, clock, max_batch=2)
    for n in range(5):
        storage.append_history("#room", "alice", str(n), 1.0)
    clock.advance(0)
    sizes = []
    while pool.waiting:
        sizes += pool.batch_sizes()
        pool.run_next()
    assert sizes == [2, 2, 1]


def test_a_failed_commit_fails_its_writes_and_not_the_next_batch(pool, clock):
    storage = stepped(pool, clock)
    doomed = storage.append_history("#room", "alice", "doomed", 1.0)
    clock.advance(0)
    survivor = storage.append_history("#room", "alice", "survivor", 2.0)
    failures: list[Failure] = []
    doomed.addErrback(failures.append)
    with capturedLogs() as events:
        pool.run_next(fail_with=sqlite3.OperationalError("disk I/O error"))
    assert failures[0].check(sqlite3.OperationalError)
    assert "committing a batch of 1 writes failed" in events[0]["log_format"].format(**events[0])
    pool.run_next()
    assert survivor.called and survivor.result is None
    assert storage.commits == 1


def test_a_failing_write_is_undone_back_to_its_savepoint(pool):
    def half_done(txn):
        _append_history_txn(txn, "#room", "alice", "half", 2.0)
        raise errors.MailboxFull("bob")

    def whole(text):
        return lambda txn: _append_history_txn(txn, "#room", "alice", text, 1.0)

    results = _run_batch(pool.connection.cursor(), [whole("before"), half_done, whole("after")])
    pool.connection.commit()
    assert results[0] is None and results[2] is None
    assert results[1].check(errors.MailboxFull)
    rows = pool.connection.execute("SELECT text FROM history ORDER BY id").fetchall()
    assert rows == [("before",), ("after",)]


def test_close_commits_waiting_writes_before_closing_the_pool(pool, clock):
    storage = stepped(pool, clock)
    write = storage.append_history("#room", "alice", "last words", 1.0)
    closed = storage.close()
    # close() does not wait for the end of the turn to start the batch.
    assert pool.batch_sizes() == [1]
    assert not closed.called and not pool.closed
    pool.run_next()
    assert write.called and closed.called and pool.closed


def test_closed_storage_refuses_requests(pool, clock):
    storage = stepped(pool, clock)
    storage.close()
    for request in (
        storage.append_history("#room", "alice", "late", 1.0),
        storage.get_account("alice"),
        storage.close(),
    ):
        with pytest.raises(StorageClosed):
            request.result.raiseException()
        request.addErrback(lambda _: None)


# SQLite: the database file, its schema and its durability.


def stored_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute("SELECT version FROM version").fetchone()
    return version


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture
def schemas(tmp_path) -> Path:
    """A schema directory going up to v3: v1 with the shipped tables, then two upgrades."""
    directory = tmp_path / "schema"
    directory.mkdir()
    (directory / "v1.sql").write_text(CURRENT_SCHEMA.create_script())
    (directory / "upgrade-v1-to-v2.sql").write_text("CREATE TABLE notes (text TEXT NOT NULL);")
    # Runs only after v1 to v2 has made the table; ends with a comment, no newline.
    (directory / "upgrade-v2-to-v3.sql").write_text(
        "INSERT INTO notes (text) VALUES ('written by v3') -- no semicolon"
    )
    return directory


def reopen(path: Path, schema: Schema = CURRENT_SCHEMA) -> SQLiteStorage:
    return open_sqlite(str(path), reactor, schema)


@pytest_twisted.ensureDeferred
async def test_new_database_records_the_schema_version_and_uses_wal(db):
    await (reopen(db)).close()
    assert stored_version(db) == SCHEMA_VERSION == CURRENT_SCHEMA.version
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest_twisted.ensureDeferred
async def test_upgrades_apply_in_order_and_keep_the_data(db, schemas):
    storage = reopen(db, Schema(schemas, 1))
    await storage.create_account("alice", "hash")
    await storage.close()
    with capturedLogs() as events:
        storage = reopen(db, Schema(schemas, 3))
    assert await storage.get_account("alice") == Account("alice", "hash")
    await storage.close()
    assert stored_version(db) == 3
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT text FROM notes").fetchall() == [("written by v3",)]
    assert any("upgraded" in event["log_format"] for event in events)
    # The database as it was before the upgrade is kept beside it.
    backup = db.with_name("chat.db.backup-v1")
    assert stored_version(backup) == 1
    assert "notes" not in table_names(backup)


@pytest_twisted.ensureDeferred
async def test_new_database_is_created_at_the_target_version_directly(db, schemas):
    (schemas / "v2.sql").write_text(CURRENT_SCHEMA.create_script() + "CREATE TABLE extra (x);")
    await (reopen(db, Schema(schemas, 2))).close()
    assert stored_version(db) == 2
    assert "extra" in table_names(db)
    assert "notes" not in table_names(db)


@pytest_twisted.ensureDeferred
async def test_missing_upgrade_leaves_the_database_alone(db, schemas):
    await (reopen(db, Schema(schemas, 1))).close()
    with pytest.raises(SchemaError, match=r"upgrade-v3-to-v4\.sql"):
        reopen(db, Schema(schemas, 4))
    assert stored_version(db) == 1
    assert "notes" not in table_names(db)


@pytest_twisted.ensureDeferred
async def test_failing_upgrade_rolls_back_every_step(db, schemas):
    await (reopen(db, Schema(schemas, 1))).close()
    (schemas / "upgrade-v2-to-v3.sql").write_text("INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        reopen(db, Schema(schemas, 3))
    assert stored_version(db) == 1
    assert "notes" not in table_names(db)
    # Fixed, the upgrade then goes through.
    (schemas / "upgrade-v2-to-v3.sql").write_text("SELECT 1;")
    await (reopen(db, Schema(schemas, 3))).close()
    assert stored_version(db) == 3


# The tables of schema v1 that v2 changes, with a message and a history entry.
V1_TABLES = """
CREATE TABLE version (version INTEGER NOT NULL);
INSERT INTO version (version) VALUES (1);
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, recipient_key TEXT NOT NULL,
    recipient TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL, sent_at REAL NOT NULL);
CREATE TABLE history (id INTEGER PRIMARY KEY, room_key TEXT NOT NULL, room TEXT NOT NULL,
    sender TEXT NOT NULL, text TEXT NOT NULL, sent_at REAL NOT NULL);
INSERT INTO messages (recipient_key, recipient, sender, text, sent_at)
    VALUES ('bob', 'bob', 'alice', 'kept', 1.0);
INSERT INTO history (room_key, room, sender, text, sent_at)
    VALUES ('#a', '#a', 'alice', 'old', 2.0);
"""


@pytest_twisted.ensureDeferred
async def test_v1_is_upgraded_to_actions_keeping_messages_and_history(db):
    with sqlite3.connect(db) as connection:
        connection.executescript(V1_TABLES)
    storage = reopen(db)
    (kept,) = await storage.pending_messages("bob")
    assert (kept.text, kept.action) == ("kept", False)
    await storage.append_history("#a", "alice", "waves", 3.0, True)
    assert await storage.recent_history("#a", 5) == [
        HistoryEntry("#a", "alice", "old", 2.0),
        HistoryEntry("#a", "alice", "waves", 3.0, True),
    ]
    await storage.close()
    assert stored_version(db) == 2


@pytest_twisted.ensureDeferred
async def test_newer_database_is_refused(db):
    await (reopen(db)).close()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaError, match="newer than this chatroute"):
        reopen(db)


@pytest_twisted.ensureDeferred
async def test_other_database_is_refused(db):
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE something (x)")
    with pytest.raises(SchemaError, match="not a chatroute database"):
        reopen(db)


@pytest_twisted.ensureDeferred
async def test_everything_is_there_after_close_and_reopen(db):
    storage = reopen(db)
    await storage.create_account("Alice", "hash")
    message_id = await storage.store_message("bob", "Alice", "hi", 1.0, cap=5)
    await storage.append_history("#room", "Alice", "hello", 2.0)
    # Asked for but not waited for: close() commits them.
    storage.append_history("#room", "Alice", "bye", 3.0)
    storage.set_password_hash("alice", "new hash")
    await storage.close()
    storage = reopen(db)
    assert await storage.get_account("ALICE") == Account("Alice", "new hash")
    assert await storage.pending_messages("bob") == [
        StoredMessage(message_id, "bob", "Alice", "hi", 1.0)
    ]
    assert [e.text for e in await storage.recent_history("#room", 5)] == ["hello", "bye"]
    await storage.close()


# Keeps 20 writes in flight, prints each one's number once acknowledged, and
# kills itself with SIGKILL at the 500th acknowledgement, writes still pending.
KILLED_WRITER = """
import os, signal, sys
from itertools import count
from twisted.internet import task
from twisted.internet.defer import Deferred
from chatroute.storage.sqlite import open_sqlite

async def main(reactor, path):
    storage = open_sqlite(path, reactor)
    numbers = count()
    acknowledged = 0

    def write():
        n = next(numbers)
        storage.append_history("#room", "writer", str(n), 0.0).addCallback(done, n)

    def done(_, n):
        nonlocal acknowledged
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
        acknowledged += 1
        if acknowledged == 500:
            os.kill(os.getpid(), signal.SIGKILL)
        write()

    for _ in range(20):
        write()
    await Deferred()

task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
"""


@pytest_twisted.ensureDeferred
async def test_kill_9_loses_nothing_acknowledged(db):
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    acknowledged = set(killed.stdout.split())
    assert len(acknowledged) == 500
    storage = reopen(db)
    kept = {entry.text for entry in await storage.recent_history("#room", 10_000)}
    await storage.close()
    assert acknowledged <= kept


@pytest_twisted.ensureDeferred
async def test_a_locked_database_fails_its_writes_logged_and_later_writes_succeed(db, monkeypatch):
    # Another process (a backup, say) holding the write lock past the busy timeout.
    monkeypatch.setattr(sqlite_storage, "BUSY_TIMEOUT", 0.05)
    storage = reopen(db)
    try:
        await storage.append_history("#lobby", "alice", "before", 1.0)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with (
                capturedLogs() as events,
                pytest.raises(sqlite3.OperationalError, match="locked"),
            ):
                await storage.append_history("#lobby", "alice", "refused", 2.0)
            # Reads go on meanwhile (WAL).
            assert len(await storage.recent_history("#lobby", 10)) == 1
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert any(event.get("log_failure") for event in events), "logged with its traceback"
        await storage.append_history("#lobby", "alice", "after", 3.0)
        history = await storage.recent_history("#lobby", 10)
        assert [entry.text for entry in history] == ["before", "after"]
    finally:
        await storage.close()
