"""
Private C{redis-server} instances for the tests: each on a free loopback
port, in a temporary directory of its own, keeping nothing on disk, stopped
after the test. No system service is used or touched.

C{scripts/setup-test-packages} installs Debian's C{redis-server} where it is
missing; where it still cannot be found, the tests that need it skip and say
why. Every wait is a bounded poll. The command and the checks are those of
C{chatroute.nodes}, which runs C{scripts/serve --nodes N}.
"""

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatroute.nodes import free_port, ping, redis_command, redis_server_binary, wait_answering

__all__ = ["RedisServer", "free_port", "ping", "private_redis"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.02
# A port picked as free may be taken before the server binds it; try another.
_START_ATTEMPTS = 5


class RedisServer:
    """
    One private C{redis-server}, on 127.0.0.1 only, with no persistence
    (C{--save ''}, no append-only file): a restart starts it empty, as a
    Redis that lost its data would.

    @ivar port: the port it listens on, the same across L{restart}s.
    @ivar url: the C{redis://} URL of its database 0, as C{--redis} takes it.
    """

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._runs = 0
        self.port = 0
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            if self._start():
                break
        else:
            pytest.fail(f"redis-server did not start on a free port; its log:\n{self.log()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def log(self) -> str:
        """What the current (or last) run logged."""
        path = self.directory / f"redis-{self._runs}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _start(self) -> bool:
        """Start on L{port} and wait for C{PING}; False if it exited (the port was taken)."""
        self._runs += 1
        command = redis_command(self._binary, self.port, self.directory)
        log = (self.directory / f"redis-{self._runs}.log").open("wb")
        with log:
            self._process = subprocess.Popen(
                command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        if wait_answering(self._process, self.port, START_TIMEOUT):
            return True
        if self._process.poll() is not None:
            return False
        self.stop()
        pytest.fail(f"redis-server did not answer PING within {START_TIMEOUT} s:\n{self.log()}")

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop it (SIGTERM; SIGKILL if it lingers) and wait until the port is closed."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """End it at once with SIGKILL, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT)
        self._process = None

    def restart(self) -> None:
        """Stop it and start it again, empty, on the same port."""
        self.stop()
        self.start_again()

    def start_again(self) -> None:
        """Start it again on the same port after L{stop} or L{kill}."""
        deadline = time.monotonic() + START_TIMEOUT
        # The old socket may linger a moment; SO_REUSEADDR lets Redis rebind, but retry anyway.
        while not self._start():
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start again on {self.port}:\n{self.log()}")
            time.sleep(_POLL_INTERVAL)


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[RedisServer]:
    """A L{RedisServer} in C{directory}, stopped afterwards; skips where none is installed."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/setup-test-packages installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory, binary)
    try:
        yield server
    finally:
        server.stop()
