"""
PostgreSQL's own promises, on a real private server: group commit, and
PostgreSQL going away and coming back (stopped, restarted under load, or a
connection lost during COMMIT) with every write applied exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import count

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs

from chatroute.core.interfaces import Account
from chatroute.storage.batch import SERVER_LINGER
from tests.redis_server import free_port

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (scripts/setup-env test)")

from chatroute.storage import postgres  # noqa: E402 (needs psycopg)
from chatroute.storage.postgres import (  # noqa: E402
    PostgresStorage,
    StorageUnavailable,
    open_postgres,
    redact,
)

# Generous, as the other waits of the tests; a passing run never waits this long.
WAIT = 30.0


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Let the reactor run until C{condition} holds; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not so after {timeout} s")
        await deferLater(reactor, 0.01)


def logged(events: list[dict]) -> list[str]:
    return [event["log_format"].format(**event) for event in events if "log_format" in event]


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()


@pytest_twisted.async_yield_fixture
async def storage(postgres_url):
    store = open_postgres(postgres_url, reactor)
    yield store
    await store.close()


@pytest_twisted.ensureDeferred
async def test_the_writes_of_one_turn_are_one_transaction_acknowledged_after_commit(
    storage, postgres_url
):
    visible_at_first_ack: list[int] = []

    def first_ack(_):
        # Blocking, on the reactor thread: fine for a test, and only once.
        if not visible_at_first_ack:
            ((seen,),) = rows(postgres_url, "SELECT count(*) FROM history")
            visible_at_first_ack.append(seen)

    writes = [
        storage.append_history("#room", "alice", str(n), float(n)).addCallback(first_ack)
        for n in range(300)
    ]
    await DeferredList(writes, fireOnOneErrback=True)
    assert storage.commits == 1
    assert visible_at_first_ack == [300], "acknowledged only once all of its batch committed"


@pytest_twisted.ensureDeferred
async def test_times_keep_double_precision(storage):
    sent_at = 1_800_000_000.123456
    await storage.store_message("bob", "alice", "hi", sent_at, cap=5)
    await storage.append_history("#room", "alice", "hi", sent_at)
    assert [m.sent_at for m in await storage.pending_messages("bob")] == [sent_at]
    assert [e.sent_at for e in await storage.recent_history("#room", 1)] == [sent_at]


@pytest_twisted.ensureDeferred
async def test_requests_while_postgresql_is_down_wait_for_it_and_are_logged(postgres, storage):
    await storage.create_account("alice", "hash")
    await deferToThread(postgres.stop)
    with capturedLogs() as events:
        read = storage.get_account("alice")
        write = storage.append_history("#room", "alice", "while down", 1.0)
        await until(lambda: storage.retries >= 4)
        assert not read.called and not write.called
        await deferToThread(postgres.start)
        assert await read == Account("alice", "hash")
        await write
    assert [e.text for e in await storage.recent_history("#room", 5)] == ["while down"]
    messages = logged(events)
    assert any(m.startswith("lost PostgreSQL (") for m in messages), messages
    assert any(m.startswith("PostgreSQL is back after ") for m in messages), messages


@pytest_twisted.ensureDeferred
async def test_restarted_under_load_every_acknowledged_message_is_kept_once(
    restart_postgres, postgres_url
):
    storage = open_postgres(postgres_url, reactor, linger=SERVER_LINGER)
    numbers = count()
    acknowledged: dict[int, int] = {}  # message id -> number
    failed: list[object] = []
    in_flight: set[Deferred] = set()
    writing = True

    def write() -> None:
        n = next(numbers)
        stored = storage.store_message("bob", "alice", str(n), float(n), cap=1_000_000)
        in_flight.add(stored)
        stored.addCallbacks(done, failed.append, callbackArgs=(n,))
        stored.addBoth(lambda _: in_flight.discard(stored))

    def done(message_id: int, n: int) -> None:
        acknowledged[message_id] = n
        if writing:
            write()

    with capturedLogs() as events:
        for _ in range(20):
            write()
        await until(lambda: len(acknowledged) >= 200)
        await deferToThread(restart_postgres)
        after_restart = len(acknowledged)
        await until(lambda: len(acknowledged) >= after_restart + 200)
        writing = False
        await until(lambda: not in_flight)
    kept = await storage.pending_messages("bob")
    await storage.close()

    assert failed == []
    assert sorted(m.id for m in kept) == sorted(acknowledged)
    assert sorted(int(m.text) for m in kept) == sorted(acknowledged.values()), "none twice"
    assert storage.retries > 0, "the restart was seen"
    assert any(m.startswith("PostgreSQL is back") for m in logged(events))


def lose_next_commit(storage_pool, committed: bool) -> None:
    """
    Make the pool's next COMMIT lose its connection: after committing, or
    before, so that whether it did is unknown to the storage.
    """

    class LosesCommit(postgres._Connection):
        def commit(self) -> None:
            if armed:
                armed.clear()
                if committed:
                    self._connection.commit()
                self._connection.close()
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            self._connection.commit()

    armed = [True]
    storage_pool.connectionFactory = LosesCommit


@pytest.mark.parametrize(
    ("committed", "told"),
    [(True, "committed as its connection was lost"), (False, "did not commit")],
)
@pytest_twisted.ensureDeferred
async def test_a_commit_of_unknown_outcome_is_asked_about_never_applied_twice(
    postgres_url, committed, told
):
    await open_postgres(postgres_url, reactor).close()
    pool = postgres._pool(postgres._conninfo(postgres_url), reactor)
    storage = PostgresStorage(pool, reactor)
    lose_next_commit(pool, committed)
    with capturedLogs() as events:
        message_id = await storage.store_message("bob", "alice", "once", 1.0, cap=5)
    kept = await storage.pending_messages("bob")
    await storage.close()
    assert [(m.id, m.text) for m in kept] == [(message_id, "once")]
    assert any(told in m for m in logged(events)), logged(events)


class AnsweringConnection:
    """A connection whose cursor answers each query with the next of C{rows}."""

    def __init__(self, *rows: tuple) -> None:
        self.rows = list(rows)
        self.queries: list[str] = []

    def cursor(self):
        return self

    def execute(self, sql, parameters=()):
        self.queries.append(sql)

    def fetchone(self):
        return self.rows.pop(0)


def test_after_a_failover_a_lost_commit_is_given_up_not_guessed():
    # The id may be another transaction's on the new timeline: not even asked about.
    promoted = AnsweringConnection(("00000002",))
    with pytest.raises(StorageUnavailable, match="another timeline"):
        postgres._committed_txn(promoted, postgres.Transaction("7000", "00000001"))
    assert len(promoted.queries) == 1


@pytest.mark.parametrize(("status", "committed"), [("committed", True), ("aborted", False)])
def test_on_the_same_timeline_postgresql_is_asked(status, committed):
    same = AnsweringConnection(("00000001",), (status,))
    assert postgres._committed_txn(same, postgres.Transaction("7000", "00000001")) is committed


REFUSE_AT_COMMIT = """
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.text = 'refused at commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON history
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();
"""


@pytest_twisted.ensureDeferred
async def test_a_commit_the_server_refuses_fails_its_batch_and_is_not_retried(
    storage, postgres_url
):
    with psycopg.connect(postgres_url) as connection:
        connection.execute(REFUSE_AT_COMMIT)
    batch = [
        storage.append_history("#room", "alice", "refused at commit", 1.0),
        storage.append_history("#room", "alice", "in the same batch", 2.0),
    ]
    with capturedLogs() as events:
        results = await DeferredList(batch, consumeErrors=True)
    assert [ok for ok, _ in results] == [False, False]
    assert all(failure.check(psycopg.errors.RaiseException) for _, failure in results)
    assert any("committing a batch of 2 writes failed" in m for m in logged(events))
    await storage.append_history("#room", "alice", "later", 3.0)
    assert [e.text for e in await storage.recent_history("#room", 5)] == ["later"]
    assert storage.retries == 0


def unreachable(retry_for: float) -> PostgresStorage:
    """Storage on a port that nothing listens on."""
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    pool = postgres._pool(postgres._conninfo(url), reactor)
    storage = PostgresStorage(pool, reactor)
    storage.retry_for = retry_for
    return storage


@pytest_twisted.ensureDeferred
async def test_a_request_is_given_up_after_retry_for():
    storage = unreachable(retry_for=0.3)
    started = time.monotonic()
    with capturedLogs() as events, pytest.raises(StorageUnavailable, match="Connection refused"):
        await storage.get_account("alice")
    assert 0.2 < time.monotonic() - started < WAIT
    assert storage.retries >= 2
    assert sum(m.startswith("lost PostgreSQL") for m in logged(events)) == 1, "once per outage"
    await storage.close()


@pytest_twisted.ensureDeferred
async def test_closing_while_postgresql_is_away_does_not_wait_long():
    storage = unreachable(retry_for=60)
    storage.closing_retry_for = 0.2
    write = storage.append_history("#room", "alice", "lost", 1.0)
    await until(lambda: storage.retries >= 1)
    with capturedLogs():
        started = time.monotonic()
        await storage.close()
        assert time.monotonic() - started < WAIT
        with pytest.raises(StorageUnavailable):
            await write


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://chat:s3cret@db:5432/chat", "postgresql://chat:***@db:5432/chat"),
        ("postgresql://chat@db/chat?password=s3cret", "postgresql://chat@db/chat?password=***"),
        ("postgres://chat:p%40ss@db/chat", "postgres://chat:***@db/chat"),
        ("postgres://chat:p@ss@db/chat", "postgres://chat:***@db/chat"),
        ("postgresql://chat@db/chat", "postgresql://chat@db/chat"),
        (
            "postgresql://db/chat?user=chat&password=s3cret&sslmode=require",
            "postgresql://db/chat?user=chat&password=***&sslmode=require",
        ),
        ("host=db password='s3 cret' dbname=chat", "host=db password=*** dbname=chat"),
    ],
)
def test_passwords_are_never_shown(url, shown):
    assert redact(url) == shown
