"""The token bucket and the connection counts."""

from twisted.internet.task import Clock

from chatroute.core.errors import ServerFull, TooManyConnections
from chatroute.core.limits import ConnectionCounter, Limits, TokenBucket


def test_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.advance(10)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_bucket_refusals_do_not_borrow_from_the_future():
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take()
    for _ in range(100):
        assert not bucket.take()
    clock.advance(1)
    assert bucket.take()


def test_counts_per_address_and_in_all():
    counter = ConnectionCounter(Limits(max_per_address=2, max_connections=3))
    assert counter.admit("10.0.0.1") is None
    assert counter.admit("10.0.0.1") is None
    assert counter.admit("10.0.0.1") == TooManyConnections("10.0.0.1", 2)
    assert counter.admit("10.0.0.2") is None
    assert counter.admit("10.0.0.3") == ServerFull(3)
    counter.release("10.0.0.1")
    assert counter.admit("10.0.0.3") is None


def test_zero_turns_the_counts_off():
    counter = ConnectionCounter(Limits(max_per_address=0, max_connections=0))
    assert all(counter.admit("10.0.0.1") is None for _ in range(1000))
