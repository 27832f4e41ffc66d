"""
Group commit, for every SQL store: many writes, one transaction.

Writes go through one L{BatchWriter}: the writes asked for in one reactor
turn, or while a batch is being committed, are run together in one
transaction, at most L{MAX_BATCH} at a time, one batch at a time, in the
order asked. Each write runs in its own savepoint (L{run_batch}), so one
that fails (a taken name, a full mailbox) is undone and fails its own
Deferred alone; the others commit. A write's Deferred fires only after its
batch has committed: an acknowledgement sent from it survives a crash.

The commit (the one fsync, or the round trip to a database server) is what
costs, not the row, so a batch of a hundred writes costs about what one
does.
"""

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from chatroute.storage.sql import Txn

MAX_BATCH = 1000
"""The most writes committed in one transaction."""

SERVER_LINGER = 0.01
"""
Seconds the server's batches wait for more writes before they start: at a
thousand stored messages a second this puts about ten in each transaction
instead of one or two (the commit, not the row, is what costs), for at most
10 ms more before a stored message is acknowledged.
"""

SERVER_BACKGROUND_LINGER = 0.1
"""
Seconds the server's batches of background writes (that nobody waits for:
room history) wait for more: at a thousand room messages a second, a
hundred in each transaction. A write someone waits for starts the batch
sooner, background writes and all; so does a read of history.
"""

_T = TypeVar("_T")

Operation = Callable[["Txn"], Any]
"""One write, run on the database thread: it may raise to fail, undoing what it did."""

CommitBatch = Callable[[list[Operation]], Deferred[list[Any]]]
"""
Runs a batch of writes in one transaction (with L{run_batch}) and commits it:
a Deferred firing with each write's result or L{Failure}, in order, once
committed, or failing if the batch as a whole did not commit.
"""

log = Logger()


@dataclass(slots=True)
class _Write:
    """A write waiting for its batch: what to run on the cursor, and whom to tell."""

    operation: Operation
    done: Deferred[Any]
    background: bool


class Insert:
    """
    A write that adds one row and cannot break a constraint (room history):
    L{run_batch} runs a run of them with the same SQL as one C{executemany}.
    """

    __slots__ = ("parameters", "sql")

    def __init__(self, sql: str, parameters: Sequence[Any]) -> None:
        self.sql = sql
        self.parameters = parameters

    def __call__(self, txn: "Txn") -> None:
        txn.execute(self.sql, self.parameters)


class BatchWriter:
    """
    Group commit: runs writes in batches, one transaction per batch, one
    batch at a time, firing each write's Deferred after its batch commits.
    """

    def __init__(
        self,
        commit: CommitBatch,
        clock: IReactorTime,
        max_batch: int,
        linger: float,
        background_linger: float | None = None,
    ) -> None:
        """
        @param commit: runs and commits one batch; called again only once
            its last call's Deferred has fired.
        @param clock: schedules the start of each batch.
        @param max_batch: the most writes committed in one transaction.
        @param linger: seconds a batch waits for more writes before it starts.
        @param background_linger: the same for a batch of background writes
            only (by default C{linger}).
        """
        self._commit = commit
        self._clock = clock
        self._max_batch = max_batch
        self._linger = linger
        self._background_linger = linger if background_linger is None else background_linger
        self._queue: deque[_Write] = deque()
        # How many of the queued writes someone waits for (not background).
        self._awaited = 0
        self._start_call: IDelayedCall | None = None
        self._committing = False
        self._idle_waiters: list[Deferred[None]] = []
        self.commits = 0

    def submit(self, operation: Callable[["Txn"], _T], background: bool = False) -> Deferred[_T]:
        """
        Queue a write.

        @param operation: runs the write on the database thread; it may raise
            to fail the write, undoing whatever it did.
        @param background: nobody waits for it: it may wait longer for its
            batch (C{background_linger}).
        @return: Deferred firing with what C{operation} returned once its batch
            has committed, or failing with what it raised.
        """
        done: Deferred[_T] = Deferred()
        self._queue.append(_Write(operation, done, background))
        if not background:
            self._awaited += 1
        if not self._committing:
            self._schedule()
        return done

    def hurry(self) -> None:
        """Start the waiting batch now (a read wants to see it)."""
        if self._start_call is not None:
            self._start_call.cancel()
            self._start_batch()

    def _schedule(self) -> None:
        """
        Start the next batch after the linger of what is queued (or sooner,
        if it was set to start sooner), or at least at the end of this
        reactor turn, so that every write asked for meanwhile joins it.
        """
        linger = self._linger if self._awaited else self._background_linger
        start = self._start_call
        if start is None:
            self._start_call = self._clock.callLater(linger, self._start_batch)
        elif start.getTime() > self._clock.seconds() + linger:
            start.reset(linger)

    def drain(self) -> Deferred[None]:
        """Deferred firing once no write is queued or being committed."""
        self.hurry()
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
        self._awaited -= sum(not write.background for write in batch)
        self._committing = True
        committed = self._commit([write.operation for write in batch])
        committed.addBoth(self._batch_done, batch)

    def _batch_done(self, outcomes: list[Any] | Failure, batch: list[_Write]) -> None:
        self._committing = False
        if self._queue:
            # Writes that came in during the commit; their batch goes first,
            # so that it commits while this one's callbacks run.
            if self._linger or self._background_linger:
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


def run_batch(txn: "Txn", operations: Sequence[Operation]) -> list[Any]:
    """
    Run writes in one transaction, each in a savepoint (database thread).

    Opens the transaction (with the dialect's C{begin}, where the driver
    does not); committing it is the caller's. A write that raises is rolled
    back to its savepoint alone, and its L{Failure} is its outcome. An error
    the savepoint cannot contain (the disk, a lost connection) escapes, and
    the whole batch is rolled back. A run of L{Insert}s of one SQL text
    runs as one C{executemany}, in one savepoint; should that fail, each
    runs alone.

    @return: each write's result or L{Failure}, in order.
    """
    begin = txn.dialect.begin
    if begin is not None:
        txn.execute(begin)
    outcomes: list[Any] = []
    at, count = 0, len(operations)
    while at < count:
        first = operations[at]
        end = at + 1
        if type(first) is Insert:
            while end < count and _same_insert(operations[end], first):
                end += 1
        if end - at > 1 and _insert_all(txn, operations[at:end]):  # type: ignore[arg-type]
            outcomes.extend([None] * (end - at))
        else:
            outcomes.extend(_run_each(txn, operations[at:end]))
        at = end
    return outcomes


def _same_insert(operation: Operation, first: Insert) -> bool:
    return type(operation) is Insert and operation.sql == first.sql


def _insert_all(txn: "Txn", inserts: Sequence[Insert]) -> bool:
    """Run C{inserts} (of one SQL) as one C{executemany} in a savepoint; False if it failed."""
    txn.execute("SAVEPOINT write")
    try:
        txn.executemany(inserts[0].sql, [insert.parameters for insert in inserts])
    except Exception:
        txn.execute("ROLLBACK TO write")
        txn.execute("RELEASE write")
        return False
    txn.execute("RELEASE write")
    return True


def _run_each(txn: "Txn", operations: Sequence[Operation]) -> list[Any]:
    """Run each of C{operations} in its own savepoint: each result, or the L{Failure} it raised."""
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
