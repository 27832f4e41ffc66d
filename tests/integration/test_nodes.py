"""
C{scripts/serve --nodes N} (C{python -m chatroute.nodes}): a private Redis and
N real nodes on one port, one chat, all stopped by one Ctrl-C.
"""

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatroute.nodes import free_port, ping, redis_server_binary

from .support import (
    READ_TIMEOUT,
    STOP_TIMEOUT,
    ChatConnection,
    eventually_who,
    subprocess_environment,
)

pytestmark = pytest.mark.integration

_IN_STEP = re.compile(r"^node(\d) \| .*backplane: node \w+ in step", re.MULTILINE)
_REDIS = re.compile(r"private Redis on redis://127\.0\.0\.1:(\d+)/0 \(in (.+)\)$", re.MULTILINE)
_WITHIN = 20.0
_POLL = 0.05


class Launcher:
    """The launcher's process and what it wrote, read with bounded polls."""

    def __init__(self, directory: Path, *arguments: str) -> None:
        self.out, self.err = directory / "out.log", directory / "err.log"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatroute.nodes", *arguments],
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=subprocess_environment(),
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], count: int = 1) -> list[re.Match[str]]:
        deadline = time.monotonic() + _WITHIN
        while True:
            found = list(pattern.finditer(self.output()))
            if len(found) >= count:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{pattern.pattern!r} not seen {count} times:\n{self.output()}")
            time.sleep(_POLL)

    def stop(self) -> int | None:
        """Stop it as Ctrl-C would, so that it stops its nodes and Redis; kill it if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(STOP_TIMEOUT * 3)
            except subprocess.TimeoutExpired:
                self.process.kill()  # its nodes and Redis get SIGTERM from the kernel
        return self.process.wait(STOP_TIMEOUT)


def test_two_nodes_on_one_port_one_chat_and_one_ctrl_c_stops_everything(tmp_path):
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (scripts/setup-test-packages installs it)")
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    database = str(tmp_path / "chat.db")
    launcher = Launcher(tmp_path, "--nodes", "2", "--listen", listen, "--db", database)
    users: list[ChatConnection] = []
    try:
        (redis,) = launcher.wait_for(_REDIS)
        assert {match.group(1) for match in launcher.wait_for(_IN_STEP, 2)} == {"1", "2"}
        for n in range(24):
            users.append(ChatConnection(port, f"u{n}"))
            users[-1].register(f"u{n}")
        # Both nodes took some (the kernel hashes each connection to one of them).
        for node in (1, 2):
            launcher.wait_for(re.compile(rf"^node{node} \| .* connected$", re.MULTILINE))
        assert eventually_who(users[0], [user.nick for user in users], within=5.0) == []
        users[0].send("@u23:hello")
        users[23].expect("<u0> hello")

        launcher.process.send_signal(signal.SIGINT)
        assert launcher.process.wait(STOP_TIMEOUT * 3) == 0, launcher.output()
        output = launcher.output()
        assert output.count("Server Shut Down.") == 2, output
        assert "Traceback" not in output, output
        for user in users:
            user.expect("* the server is shutting down; closing")
        assert not ping(int(redis.group(1)), timeout=0.2)
        assert not Path(redis.group(2)).exists()
    finally:
        for user in users:
            user.close()
        launcher.stop()


def _free_port_pair() -> int:
    """A loopback port that, with the one after it, nothing listened on a moment ago."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    pytest.fail("no two free loopback ports in a row")


def _line_connections(port: int) -> float:
    """The line-protocol connections a node's /metrics counts."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=READ_TIMEOUT) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "chatroute_connections" and sample.labels == {"frontend": "line"}:
                return sample.value
    pytest.fail(f"no chatroute_connections in\n{text}")


def test_each_node_serves_its_metrics_on_a_port_of_its_own(tmp_path):
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (scripts/setup-test-packages installs it)")
    port, metrics = free_port(), _free_port_pair()
    launcher = Launcher(
        tmp_path, "--nodes", "2", "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--listen-metrics", f"tcp:{metrics}:interface=127.0.0.1", "--db", str(tmp_path / "m.db"),
    )  # fmt: skip
    users: list[ChatConnection] = []
    try:
        launcher.wait_for(_IN_STEP, 2)
        for node, number in ((1, metrics), (2, metrics + 1)):
            said = f"node {node} serves its metrics on tcp:{number}:interface=127.0.0.1"
            assert said in launcher.output(), launcher.output()
        for n in range(12):
            users.append(ChatConnection(port, f"u{n}"))
        # Each node counts its own connections: together, every one.
        deadline = time.monotonic() + _WITHIN
        while (_line_connections(metrics) + _line_connections(metrics + 1)) != len(users):
            assert time.monotonic() < deadline, launcher.output()
            time.sleep(_POLL)
        assert launcher.process.poll() is None, launcher.output()
    finally:
        for user in users:
            user.close()
        assert launcher.stop() == 0, launcher.output()


def test_a_launcher_killed_outright_takes_its_nodes_and_redis_with_it(tmp_path):
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (scripts/setup-test-packages installs it)")
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    launcher = Launcher(
        tmp_path, "--nodes", "2", "--listen", listen, "--db", str(tmp_path / "c.db")
    )
    try:
        (redis,) = launcher.wait_for(_REDIS)
        launcher.wait_for(_IN_STEP, 2)
        launcher.process.kill()
        launcher.process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + _WITHIN
        while ping(int(redis.group(1)), timeout=0.2) or _listening(port):
            assert time.monotonic() < deadline, "a node or Redis outlived the launcher"
            time.sleep(_POLL)
    finally:
        launcher.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
