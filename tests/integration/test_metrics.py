"""
The metrics of the real server, scraped over HTTP from its C{--listen-metrics}
endpoint while people use it on every front end; and of a node whose Redis is
restarted under it.
"""

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..redis_server import private_redis
from .support import (
    IRC_STARTED,
    METRICS_STARTED,
    READ_TIMEOUT,
    WEB_STARTED,
    ChatConnection,
    IRCConnection,
    ServerProcess,
)
from .test_backplane import IN_STEP
from .websocket import WebSocket

pytestmark = pytest.mark.integration

LISTENERS = ("--listen-metrics", "tcp:0:interface=127.0.0.1")
# Generous, as the other waits here; a passing run never waits this long.
SETTLE = 10.0
_POLL = 0.05

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scraper:
    """Reads a server's /metrics over HTTP, as Prometheus does."""

    def __init__(self, server: ServerProcess) -> None:
        port = int(server.wait_for_log(METRICS_STARTED)[0].group(1))
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.content_type = ""

    def scrape(self) -> Samples:
        """Every sample, by name and labels."""
        with urllib.request.urlopen(self.url, timeout=READ_TIMEOUT) as response:
            self.content_type = response.headers["Content-Type"]
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, frozenset(labels.items())))

    def wait_for(
        self, name: str, wanted: Callable[[float | None], bool], **labels: str
    ) -> float | None:
        """Scrape until C{name}'s value is C{wanted}, for at most L{SETTLE} seconds."""
        deadline = time.monotonic() + SETTLE
        while True:
            value = self.value(name, **labels)
            if wanted(value):
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"{name}{labels} is still {value}")
            time.sleep(_POLL)


def irc_user(server: ServerProcess, nick: str) -> IRCConnection:
    irc = IRCConnection(int(server.wait_for_log(IRC_STARTED)[0].group(1)), f"{nick} (IRC)")
    irc.send(f"NICK {nick}")
    irc.send(f"USER {nick} 0 * :{nick}")
    irc.expect_command("001")
    irc.expect_command("422")  # the end of the welcome: no message of the day
    return irc


def web_user(server: ServerProcess, nick: str) -> WebSocket:
    web = WebSocket(int(server.wait_for_log(WEB_STARTED)[0].group(1)))
    assert web.receive().startswith("* connected from")
    web.send(f"#{nick}")
    web.expect(f"* registered as {nick}")
    return web


@pytest.mark.server_options(
    *LISTENERS,
    "--listen-irc", "tcp:0:interface=127.0.0.1",
    "--listen-web", "tcp:0:interface=127.0.0.1",
)  # fmt: skip
def test_the_figures_of_a_chat_on_every_front_end(server, connect):
    metrics = Scraper(server)
    alice, bob = connect("alice"), connect("bob")
    alice.register("alice")
    bob.register("bob")
    connect("lurker")
    dave = irc_user(server, "dave")
    carol = web_user(server, "carol")
    try:
        alice.join("#lobby")
        bob.join("#lobby", alice)
        before = metrics.scrape()
        assert metrics.content_type.startswith("text/plain")
        people = {
            frontend: (
                before[("chatroute_connections", frozenset({("frontend", frontend)}))],
                before[("chatroute_users", frozenset({("frontend", frontend)}))],
            )
            for frontend in ("line", "irc", "web")
        }
        assert people == {"line": (3, 2), "irc": (1, 1), "web": (1, 1)}
        assert before[("chatroute_network_users", frozenset())] == 4
        assert before[("chatroute_rooms", frozenset())] == 1

        # Five room messages in, ten out (to both members); an error in and out.
        for n in range(5):
            alice.send(f"@#lobby:message {n}")
        for member in (alice, bob):
            for n in range(5):
                member.expect(f"#lobby <alice> message {n}")
        alice.send("/bogus")
        alice.expect("! unknown command: /bogus (try /help)")
        after = metrics.scrape()

        def grew(name: str) -> float:
            key = (name, frozenset())
            return after[key] - before[key]

        assert grew("chatroute_messages_in_total") == 6
        assert grew("chatroute_messages_out_total") == 11
        unknown = ("chatroute_errors_total", frozenset({("kind", "UnknownCommand")}))
        assert after[unknown] == 1
        assert after[("process_resident_memory_bytes", frozenset())] > 0

        # Room history is written in the background, in batches: there soon.
        metrics.wait_for(
            "chatroute_storage_seconds_count", lambda count: count == 5, operation="append_history"
        )
        assert metrics.value("chatroute_storage_failures_total", operation="append_history") == 0
        # Joining replays the room's history: one read each.
        assert metrics.value("chatroute_storage_seconds_count", operation="recent_history") == 2

        bob.close()
        metrics.wait_for("chatroute_users", lambda users: users == 1, frontend="line")
        assert metrics.value("chatroute_connections", frontend="line") == 2
    finally:
        dave.sock.close()
        carol.close()


@pytest.mark.server_options(*LISTENERS, *LISTENERS)
def test_every_metrics_listener_serves_the_same_figures(server):
    first, second = (
        f"http://127.0.0.1:{match.group(1)}/metrics"
        for match in server.wait_for_log(METRICS_STARTED, count=2)
    )
    alice = ChatConnection(server.port, "alice")
    try:
        alice.register("alice")
        for url in (first, second):
            with urllib.request.urlopen(url, timeout=READ_TIMEOUT) as response:
                assert b'chatroute_users{frontend="line"} 1.0' in response.read()
    finally:
        alice.close()


@pytest.mark.server_options(*LISTENERS)
def test_only_metrics_is_served(server):
    port = server.wait_for_log(METRICS_STARTED)[0].group(1)
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=READ_TIMEOUT)
    assert raised.value.code == 404


def test_redis_restarted_is_logged_counted_and_survived(tmp_path: Path):
    with private_redis(tmp_path / "redis") as redis:
        directory = tmp_path / "node"
        directory.mkdir()
        node = ServerProcess(directory, "--redis", redis.url, *LISTENERS)
        try:
            node.wait_for_log(IN_STEP)
            metrics = Scraper(node)
            for link in ("commands", "events"):
                assert metrics.value("chatroute_backplane_connected", link=link) == 1
                assert metrics.value("chatroute_backplane_reconnects_total", link=link) == 0
            assert metrics.value("chatroute_backplane_synced") == 1
            ann = ChatConnection(node.port, "ann")
            ann.register("ann")
            ann.join("#room")
            assert metrics.value("chatroute_backplane_seconds_count", operation="claim") == 1
            assert metrics.value("chatroute_backplane_seconds_count", operation="join") == 1

            redis.restart()
            for link in ("commands", "events"):
                metrics.wait_for(
                    "chatroute_backplane_reconnects_total", lambda count: count == 1, link=link
                )
            node.wait_for_log(IN_STEP, count=2)
            assert metrics.value("chatroute_backplane_synced") == 1
            ann.send("@#room:still here")
            ann.expect("#room <ann> still here")
            assert metrics.value("chatroute_backplane_seconds_count", operation="say") == 1
            log = node.log()
            assert "lost the connection" in log
            assert "connecting again with backoff" in log
            ann.close()
        finally:
            status = node.stop()
        assert status in (0, -15), node.log()
        assert "Traceback" not in node.log()
