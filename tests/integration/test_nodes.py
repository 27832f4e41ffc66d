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
from pathlib import Path

import pytest

from chatroute.nodes import free_port, ping, redis_server_binary

from .support import STOP_TIMEOUT, ChatConnection, eventually_who, subprocess_environment

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
