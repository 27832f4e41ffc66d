"""
Group commit (chatroute.storage.batch), seen through SQLite storage on a
pool that runs each transaction only when the test says.
"""

from __future__ import annotations

import sqlite3

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from chatroute.core import errors
from chatroute.storage.batch import run_batch
from chatroute.storage.sql import StorageClosed, Txn, history_insert
from chatroute.storage.sqlite import CURRENT_SCHEMA, SQLITE, SQLiteStorage


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


def test_history_alone_waits_longer_for_its_batch(pool, clock):
    storage = SQLiteStorage(pool, clock, linger=0.01, background_linger=0.1)
    storage.append_history("#room", "alice", "a", 1.0)
    clock.advance(0.05)
    storage.append_history("#room", "alice", "b", 1.0)
    assert pool.batch_sizes() == []
    clock.advance(0.05)
    assert pool.batch_sizes() == [2]


def test_a_write_someone_waits_for_takes_waiting_history_along_sooner(pool, clock):
    storage = SQLiteStorage(pool, clock, linger=0.01, background_linger=0.1)
    storage.append_history("#room", "alice", "a", 1.0)
    clock.advance(0.001)
    stored = storage.store_message("bob", "alice", "hi", 1.0, 10)
    clock.advance(0.01)
    assert pool.batch_sizes() == [2]
    pool.run_next()
    assert stored.called


def test_reading_history_starts_the_waiting_history_first(pool, clock):
    storage = SQLiteStorage(pool, clock, linger=0.01, background_linger=0.1)
    storage.append_history("#room", "alice", "a", 1.0)
    storage.recent_history("#room", 10)
    (_, (batch,), _), _read = pool.waiting
    assert len(batch) == 1, "the batch goes first, the read after it"


def test_a_run_of_history_is_one_executemany_and_a_failure_falls_back_to_each_alone(pool):
    class Counting(Txn):
        many = 0

        def executemany(self, sql, parameters):
            Counting.many += 1
            super().executemany(sql, parameters)

    txn = Counting(pool.connection.cursor(), SQLITE)
    entries = [history_insert("#room", "alice", str(n), 1.0) for n in range(3)]
    assert run_batch(txn, entries) == [None] * 3
    pool.connection.commit()
    assert Counting.many == 1

    broken = history_insert("#room", "alice", "no such column", 1.0)
    broken.sql = broken.sql.replace("action)", "nonsense)")
    results = run_batch(txn, [history_insert("#room", "alice", "x", 1.0), broken])
    pool.connection.commit()
    assert results[0] is None and isinstance(results[1], Failure)
    rows = pool.connection.execute("SELECT text FROM history ORDER BY id").fetchall()
    assert rows == [("0",), ("1",), ("2",), ("x",)]


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
        history_insert("#room", "alice", "half", 2.0)(txn)
        raise errors.MailboxFull("bob")

    def whole(text):
        return history_insert("#room", "alice", text, 1.0)

    txn = Txn(pool.connection.cursor(), SQLITE)
    results = run_batch(txn, [whole("before"), half_done, whole("after")])
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
