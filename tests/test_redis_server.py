"""The private Redis fixture itself: it answers, restarts empty on its port, and goes away."""

from .redis_server import ping


def test_answers_ping_on_loopback(redis_server):
    assert ping(redis_server.port)
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_restart_keeps_the_port_and_answers_again(redis_server):
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port
    assert ping(port)


def test_stop_closes_the_port(redis_server):
    redis_server.stop()
    assert not ping(redis_server.port, timeout=0.2)
