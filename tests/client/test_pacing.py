"""The client's pacing of its lines to the server's flood limit."""

from twisted.internet.task import Clock

from chatroute.client.pacing import Pacer
from chatroute.core.limits import TokenBucket


def paced(released: bool = False) -> tuple[Pacer, list[bytes], Clock]:
    clock = Clock()
    sent: list[bytes] = []
    return Pacer(sent.append, clock, released), sent, clock


def test_lines_wait_until_the_limits_are_known():
    pacer, sent, _ = paced()
    pacer.send(b"#alice")
    assert sent == []
    pacer.pace(10, 20)
    assert sent == [b"#alice"]


def test_a_released_pacer_sends_at_once_without_limit():
    pacer, sent, _ = paced(released=True)
    for n in range(100):
        pacer.send(b"%d" % n)
    assert len(sent) == 100


def test_sends_half_the_burst_at_once_then_below_the_rate_in_order():
    pacer, sent, clock = paced()
    pacer.pace(10, 20)
    lines = [b"@bob:%d" % n for n in range(40)]
    for line in lines:
        pacer.send(line)
    assert sent == lines[:10]
    assert pacer.waiting == 30
    clock.advance(1)
    assert sent == lines[:19], "9 a second: 90% of the rate"
    for _ in range(10):
        clock.advance(0.5)
    assert sent == lines


def test_never_exceeds_the_server_bucket_however_lines_come():
    """Replaying what was sent through the server's own bucket refuses nothing."""
    pacer, sent, clock = paced()
    pacer.pace(2, 6)
    server_clock = Clock()
    server = TokenBucket(2, 6, server_clock)
    refused = 0
    for step in range(200):
        before = len(sent)
        if step % 7 == 0:
            for _ in range(5):
                pacer.send(b"x")
        clock.advance(0.1)
        server_clock.advance(0.1)
        refused += sum(not server.take() for _ in range(len(sent) - before))
    assert refused == 0
    assert len(sent) >= 0.9 * 2 * 19, "and it keeps up with 90% of the rate"


def test_no_rate_means_no_limit():
    pacer, sent, _ = paced()
    pacer.pace(0, 1)
    for _ in range(50):
        pacer.send(b"x")
    assert len(sent) == 50


def test_stop_drops_what_waits_and_cancels_the_timer():
    pacer, sent, clock = paced()
    pacer.pace(1, 2)
    for _ in range(5):
        pacer.send(b"x")
    assert pacer.stop() == 4
    assert not clock.getDelayedCalls()
    clock.advance(10)
    assert sent == [b"x"]
