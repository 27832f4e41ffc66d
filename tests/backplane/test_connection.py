"""The reconnecting link to Redis, against a private redis-server, and the URL it is given."""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from chatroute.backplane.connection import (
    RedisAddress,
    RedisLink,
    RedisUnavailable,
    parse_redis_url,
)

# Generous: a loaded machine is slow; a passing run never waits this long.
WAIT = 15.0


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://localhost", RedisAddress("localhost", 6379, 0)),
        ("redis://127.0.0.1:7000/3", RedisAddress("127.0.0.1", 7000, 3)),
        ("redis://:s%40cret@h:1/", RedisAddress("h", 1, 0, None, "s@cret")),
        ("redis://me:pw@h/2", RedisAddress("h", 6379, 2, "me", "pw")),
    ],
)
def test_url_parses(url, address):
    assert parse_redis_url(url) == address


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost",
        "redis://",
        "redis://h:99999",
        "redis://h:port",
        "redis://h/db",
        "redis://h/0?x=1",
        "localhost:6379",
    ],
)
def test_malformed_url_is_refused(url):
    with pytest.raises(ValueError):
        parse_redis_url(url)


def test_address_is_shown_without_its_password():
    assert str(parse_redis_url("redis://u:secret@h:1/2")) == "redis://h:1/2"


def _ready(link: RedisLink) -> Deferred[None]:
    return link.when_ready().addTimeout(WAIT, reactor)


@pytest_twisted.ensureDeferred
async def test_commands_run_once_connected(redis_server):
    link = RedisLink(reactor, parse_redis_url(redis_server.url), "test")
    link.start()
    try:
        await _ready(link)
        assert await link.execute("SET", "k", "007") == "OK"
        assert await link.execute("GET", "k") == "007"
        assert await link.eval("return ARGV[1]", [], ["x"]) == "x"
    finally:
        await link.stop()


@pytest_twisted.ensureDeferred
async def test_commands_fail_at_once_while_there_is_no_connection(redis_server):
    redis_server.stop()
    link = RedisLink(reactor, parse_redis_url(redis_server.url), "test")
    link.start()
    try:
        assert not link.ready
        with pytest.raises(RedisUnavailable):
            link.execute("PING")
    finally:
        await link.stop()


@pytest_twisted.ensureDeferred
async def test_a_restarted_redis_is_reconnected_logged_and_counted(redis_server):
    link = RedisLink(reactor, parse_redis_url(redis_server.url), "test")
    down: Deferred[None] = Deferred()
    link.on_down = lambda: down.callback(None)
    link.start()
    try:
        await _ready(link)
        assert link.reconnects == 0
        with capturedLogs() as events:
            redis_server.restart()
            await down.addTimeout(WAIT, reactor)
            await _ready(link)
            assert await link.execute("PING") == "PONG"
        assert link.reconnects == 1
        texts = [event.get("log_format", "") for event in events]
        assert any("lost the connection" in text for text in texts)
        assert any("connected to" in text for text in texts)
    finally:
        await link.stop()


@pytest_twisted.ensureDeferred
async def test_subscriber_receives_what_is_published(redis_server):
    address = parse_redis_url(redis_server.url)
    commands = RedisLink(reactor, address, "commands")
    subscriber = RedisLink(reactor, address, "events", subscriber=True)
    received: Deferred[tuple[str, str]] = Deferred()
    subscriber.on_message = lambda channel, message: received.callback((channel, message))
    commands.start()
    subscriber.start()
    try:
        await _ready(commands)
        await _ready(subscriber)
        await subscriber.subscribe("here")
        assert await commands.execute("PUBLISH", "here", "hello") == 1
        assert await received.addTimeout(WAIT, reactor) == ("here", "hello")
    finally:
        await commands.stop()
        await subscriber.stop()
