"""One timer for the deadlines of many connections."""

from twisted.internet.task import Clock

from chatroute.core.deadlines import Deadlines


class Connection:
    """A watched connection whose deadline is C{timeout} after it was last heard from."""

    def __init__(self, clock: Clock, timeout: float | None = 10.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self.heard = clock.seconds()
        self.timed_out_at: float | None = None

    def hear(self) -> None:
        self.heard = self.clock.seconds()

    def due_at(self) -> float | None:
        return None if self.timeout is None else self.heard + self.timeout

    def timed_out(self) -> None:
        self.timed_out_at = self.clock.seconds()


def watched(clock: Clock, deadlines: Deadlines, timeout: float | None = 10.0) -> Connection:
    connection = Connection(clock, timeout)
    due = connection.due_at()
    deadlines.watch(connection, due if due is not None else clock.seconds())
    return connection


def test_a_silent_connection_times_out_at_its_deadline():
    clock = Clock()
    deadlines = Deadlines(clock)
    connection = watched(clock, deadlines)
    clock.advance(9.9)
    assert connection.timed_out_at is None
    clock.advance(0.1)
    assert connection.timed_out_at == 10.0


def test_a_connection_heard_from_moves_to_its_new_deadline():
    clock = Clock()
    deadlines = Deadlines(clock)
    connection = watched(clock, deadlines)
    clock.advance(6)
    connection.hear()
    clock.advance(4)
    assert connection.timed_out_at is None, "heard at 6: due at 16"
    clock.advance(5.9)
    assert connection.timed_out_at is None
    clock.advance(0.1)
    assert connection.timed_out_at == 16.0


def test_a_cancelled_connection_never_times_out():
    clock = Clock()
    deadlines = Deadlines(clock)
    connection = Connection(clock)
    entry = deadlines.watch(connection, 10.0)
    deadlines.cancel(entry)
    clock.advance(100)
    assert connection.timed_out_at is None
    assert clock.getDelayedCalls() == []


def test_a_connection_with_no_timeout_any_more_is_let_go():
    clock = Clock()
    deadlines = Deadlines(clock)
    connection = watched(clock, deadlines)
    connection.timeout = None
    clock.advance(10)
    assert connection.timed_out_at is None
    assert clock.getDelayedCalls() == []


def test_many_connections_share_one_timer():
    clock = Clock()
    deadlines = Deadlines(clock)
    connections = [watched(clock, deadlines, timeout=10.0 + n) for n in range(100)]
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(10)
    assert [c.timed_out_at for c in connections[:2]] == [10.0, None]
    assert len(clock.getDelayedCalls()) == 1
    clock.pump([1] * 99)
    assert [c.timed_out_at for c in connections] == [10.0 + n for n in range(100)]
    assert clock.getDelayedCalls() == []


def test_an_earlier_deadline_brings_the_timer_forward():
    clock = Clock()
    deadlines = Deadlines(clock)
    late = watched(clock, deadlines, timeout=60)
    early = watched(clock, deadlines, timeout=5)
    clock.advance(5)
    assert (early.timed_out_at, late.timed_out_at) == (5.0, None)
    clock.advance(55)
    assert late.timed_out_at == 60.0


def test_connections_due_at_the_same_moment_all_time_out():
    clock = Clock()
    deadlines = Deadlines(clock)
    connections = [watched(clock, deadlines) for _ in range(3)]
    clock.advance(10)
    assert [c.timed_out_at for c in connections] == [10.0, 10.0, 10.0]
