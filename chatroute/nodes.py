"""
Several chatroute nodes on one machine, one chat: C{scripts/serve --nodes N}.

    python -m chatroute.nodes --nodes N [twistd chatroute options]

starts a private C{redis-server} (on a free loopback port, in a temporary
directory of its own, keeping nothing on disk) and N C{twistd chatroute}
processes with C{--reuse-port --redis URL} and the options given, so that
they share every listening port and the kernel spreads the connections over
them, and one database file (by default C{chatroute.db} here: SQLite locks
it between processes; see docs/deploy.md). The first node starts alone,
so that it creates or upgrades the database, the others once it listens.
Each node's log lines come to standard output with its number in front.
Metrics are each node's own, so each C{--listen-metrics} is moved for each
node to one of its own (L{metrics_for_node}): node K of a C{tcp:PORT} one
listens on PORT+K-1 (9150, 9151, ...), of a C{unix:PATH} one on C{PATH}
for node 1 and C{PATH.K} for the others; the launcher says which.
Ctrl-C (or SIGTERM) stops the nodes, each leaving the network, then Redis;
so does any node that exits on its own (a port it cannot have, a database
it cannot use), with its status.

This is a tool that starts processes and waits for them; the server itself
never runs this code. L{PrivateRedis} is also what the bench starts Redis
with.
"""

import contextlib
import ctypes
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

START_TIMEOUT = 10.0
"""Seconds Redis may take to answer C{PING} after it is started."""
STOP_TIMEOUT = 10.0
"""Seconds a process may take to exit after SIGTERM before it is killed."""
_POLL = 0.02
_START_ATTEMPTS = 5
"""A port picked as free may be taken before Redis binds it: how many to try."""


def _die_with_us() -> None:
    """
    In a child before it runs its program: on Linux, have the kernel send it
    SIGTERM when we die, however we die (even SIGKILL), so that no node or
    Redis outlives its launcher. Elsewhere nothing.
    """
    if sys.platform.startswith("linux"):
        # Nothing can be told from here, before exec; without it the child
        # still stops with us on Ctrl-C and SIGTERM, only not on SIGKILL.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str | None:
    """The path of C{redis-server}, or None if it is not installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def install_redis_server(say: Callable[[str], None]) -> str | None:
    """
    C{redis-server}, installed with C{apt-get} (Debian's package) if it is
    missing and this process may (root, with apt-get): its path, or None.
    """
    found = redis_server_binary()
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    say("redis-server is missing; installing it with apt-get (a minute the first time)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "redis-server"]):
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)
    return redis_server_binary()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server on 127.0.0.1:C{port} answers C{PING} within C{timeout}."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_answering(
    process: "subprocess.Popen[bytes]", port: int, timeout: float = START_TIMEOUT
) -> bool:
    """
    Wait until the C{redis-server} C{process} answers C{PING} on
    127.0.0.1:C{port}: True once it does; False as soon as it has exited (the
    port was taken), or once C{timeout} seconds have passed (it still runs).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ping(port, timeout=0.5):
            return True
        time.sleep(_POLL)
    return False


def redis_command(binary: str, port: int, directory: Path) -> list[str]:
    """
    The command of a private C{redis-server}: on 127.0.0.1:C{port} only,
    working in C{directory}, with no persistence (a restart starts empty).
    """
    return [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
        *("--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""),
    ]


class PrivateRedis:
    """
    One private C{redis-server} on a free loopback port, in a temporary
    directory of its own (removed when it stops), in a session of its own
    (a Ctrl-C at the terminal is for its owner to handle).

    @ivar port: the port it listens on.
    """

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="chatroute-redis-"))
        self._log = self.directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Its database 0, as C{--redis} takes it."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Its process id while it runs."""
        return None if self._process is None else self._process.pid

    def log(self) -> str:
        """What it logged."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def start(self) -> None:
        """
        Start it and wait until it answers.

        @raise RuntimeError: it did not start; the message has its log.
        """
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            if self._start():
                return
        self.stop()
        raise RuntimeError(f"redis-server did not start; its log:\n{self.log()}")

    def _start(self) -> bool:
        """Start on L{port}; True once it answers, False if it exited (the port was taken)."""
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                redis_command(self._binary, self.port, self.directory),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_us,
            )
        return wait_answering(self._process, self.port)

    def stop(self) -> None:
        """Stop it (SIGTERM; SIGKILL if it lingers) and remove its directory."""
        process, self._process = self._process, None
        if process is not None:
            _terminate(process)
        shutil.rmtree(self.directory, ignore_errors=True)


def _terminate(process: "subprocess.Popen[bytes]") -> int:
    """SIGTERM, then SIGKILL after L{STOP_TIMEOUT}; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return _wait_or_kill(process)


def _wait_or_kill(process: "subprocess.Popen[bytes]") -> int:
    """
    The exit status of a process told to stop, killed if it takes over
    L{STOP_TIMEOUT}. (Twisted takes a second SIGTERM as a second stop, and
    logs an error for it: one is enough.)
    """
    try:
        return process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
    return process.wait(STOP_TIMEOUT)


def node_command(redis_url: str, options: list[str], twistd: str | None = None) -> list[str]:
    """The command of one node: C{twistd chatroute --reuse-port --redis URL} and C{options}."""
    if twistd is None:
        twistd = str(Path(sys.executable).with_name("twistd"))
    chatroute = ["chatroute", "--reuse-port", "--redis", redis_url, *options]
    return [twistd, "--nodaemon", "--pidfile=", *chatroute]


_METRICS = "--listen-metrics"
_PORTED = ("tcp", "tcp6", "ssl")
"""The endpoint types whose port each node moves up by its index."""


def _fields(description: str) -> list[str]:
    """An endpoint description cut at its unescaped colons (escapes kept as they are)."""
    fields, current, escaped = [], "", False
    for character in description:
        if escaped:
            current, escaped = current + character, False
        elif character == "\\":
            current, escaped = current + character, True
        elif character == ":":
            fields.append(current)
            current = ""
        else:
            current += character
    fields.append(current)
    return fields


def _keyword(field: str) -> str | None:
    """The name of a C{name=value} field, None for a positional one."""
    name, equals, _ = field.replace("\\=", "").partition("=")
    return name if equals else None


def metrics_for_node(description: str, index: int) -> str:
    """
    The C{--listen-metrics} endpoint of node C{index} (0 for the first) for
    C{description}: a C{tcp}, C{tcp6} or C{ssl} port (not 0, which gives
    each node a port of its own anyway) plus C{index}, a C{unix} path with
    C{.N} after it for node N past the first.

    @raise ValueError: the endpoint is of another type, or has no port or
        path to move, or the port would pass 65535; the message says which.
    """
    fields = _fields(description)
    kind = fields[0].lower()
    if kind not in (*_PORTED, "unix"):
        raise ValueError(
            f"{_METRICS} {description}: each node needs a metrics endpoint of its own, "
            "which --nodes makes of tcp, tcp6, ssl and unix endpoints only"
        )
    wanted = "address" if kind == "unix" else "port"
    # The port (the path) is the first positional field, or given by name.
    at = next((n for n in range(1, len(fields)) if _keyword(fields[n]) in (None, wanted)), 0)
    if not at:
        raise ValueError(f"{_METRICS} {description}: no {wanted} to give each node its own")
    name = _keyword(fields[at])
    head = "" if name is None else f"{name}="
    value = fields[at][len(head) :]
    if kind == "unix":
        if index:
            fields[at] = f"{head}{value}.{index + 1}"
        return ":".join(fields)
    if not value.isdigit():
        raise ValueError(f"{_METRICS} {description}: the port is not a number")
    port = int(value)
    if port and port + index > 65535:
        raise ValueError(f"{_METRICS} {description}: node {index + 1} would need {port + index}")
    if port:
        fields[at] = f"{head}{port + index}"
    return ":".join(fields)


def node_options(options: list[str], index: int) -> tuple[list[str], list[str]]:
    """
    The options of node C{index} (0 for the first): C{options}, each
    C{--listen-metrics} moved to the node's own (L{metrics_for_node});
    and those metrics endpoints.

    @raise ValueError: a metrics endpoint cannot be given each node.
    """
    moved: list[str] = []
    metrics: list[str] = []
    arguments = iter(options)
    for argument in arguments:
        if argument == _METRICS:
            metrics.append(metrics_for_node(next(arguments, ""), index))
            moved += [argument, metrics[-1]]
        elif argument.startswith(_METRICS + "="):
            metrics.append(metrics_for_node(argument.removeprefix(_METRICS + "="), index))
            moved.append(f"{_METRICS}={metrics[-1]}")
        else:
            moved.append(argument)
    return moved, metrics


def _say(message: str) -> None:
    """Tell the person at the terminal, on standard error."""
    sys.stderr.write(f"chatroute nodes: {message}\n")
    sys.stderr.flush()


class _Stop(Exception):
    """A signal asked us to stop."""


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _usage(problem: str) -> int:
    sys.stderr.write(
        f"chatroute nodes: {problem}\nusage: scripts/serve --nodes N [twistd chatroute options]\n"
    )
    return 2


def _split(argv: list[str]) -> tuple[int, list[str]] | str:
    """C{--nodes N} (or C{--nodes=N}) and the other options, or what is wrong."""
    count: str | None = None
    rest: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--nodes":
            count = next(arguments, "")
        elif argument.startswith("--nodes="):
            count = argument.removeprefix("--nodes=")
        else:
            rest.append(argument)
    if count is None:
        return "--nodes N is missing"
    if not count.isdigit() or not 1 <= int(count) <= 64:
        return f"--nodes: expected a number of nodes from 1 to 64, got {count!r}"
    if "--redis" in rest or any(argument.startswith("--redis=") for argument in rest):
        return "--nodes starts its own Redis; give no --redis"
    try:
        node_options(rest, int(count) - 1)
    except ValueError as error:
        return str(error)
    return int(count), rest


def main(argv: list[str] | None = None) -> int:
    """Run the nodes until Ctrl-C, SIGTERM or one of them exits; the exit status."""
    parsed = _split(sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, str):
        return _usage(parsed)
    count, options = parsed

    binary = install_redis_server(_say)
    if binary is None:
        _say(
            "redis-server is not installed, and cannot be installed here (that needs "
            "apt-get and root): install Redis (Debian/Ubuntu: apt-get install redis-server)"
        )
        return 1
    signal.signal(signal.SIGINT, _stop_on_signal)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    redis = PrivateRedis(binary)
    nodes = _Nodes(sys.stdout.buffer)
    status = 0
    try:
        redis.start()
        _say(f"private Redis on {redis.url} (in {redis.directory})")
        _say(f"starting {count} nodes sharing their ports")
        # The first creates or upgrades the database before the others open it.
        _start_node(nodes, redis.url, options, 0)
        status = nodes.relay(until=_LISTENING)
        if not status:
            for index in range(1, count):
                _start_node(nodes, redis.url, options, index)
            status = nodes.relay()
    except _Stop:
        _say("stopping the nodes, then Redis")
    except RuntimeError as error:
        _say(str(error))
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        nodes.stop()
        redis.stop()
    return status


def _start_node(nodes: "_Nodes", redis_url: str, options: list[str], index: int) -> None:
    """Start node C{index} (0 for the first), saying where it serves its metrics."""
    mine, metrics = node_options(options, index)
    for description in metrics:
        _say(f"node {index + 1} serves its metrics on {description}")
    nodes.start(node_command(redis_url, mine))


_LISTENING = b"chatroute listening on "
"""What a node logs once its database is ready and it listens."""


class _Nodes:
    """The nodes' processes, their output copied to C{out} with each one's number in front."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._processes: list[subprocess.Popen[bytes]] = []
        self._unfinished: list[bytes] = []
        self._selector = selectors.DefaultSelector()

    def start(self, command: list[str]) -> None:
        """Start one more node, in a session of its own: Ctrl-C is for us to pass on."""
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_us,
        )
        assert process.stdout is not None
        self._selector.register(process.stdout.fileno(), selectors.EVENT_READ, len(self._processes))
        self._processes.append(process)
        self._unfinished.append(b"")

    def relay(self, until: bytes | None = None) -> int:
        """
        Copy output until a line holds C{until} (0), or until a node exits
        (its exit status, 1 if that was 0).
        """
        while True:
            for key, _ in self._selector.select(timeout=0.5):
                lines = self._read(key.data)
                if until is not None and any(until in line for line in lines):
                    return 0
            for index, process in enumerate(self._processes):
                code = process.poll()
                if code is not None:
                    self._read(index, everything=True)
                    _say(f"node {index + 1} exited with {code}; stopping the others")
                    return code or 1

    def _read(self, index: int, everything: bool = False) -> list[bytes]:
        """Copy what node C{index} wrote (all of it up to the end with C{everything})."""
        stdout = self._processes[index].stdout
        if stdout is None or stdout.closed:
            return []
        data = stdout.read() if everything else os.read(stdout.fileno(), 65536)
        lines = (self._unfinished[index] + data).split(b"\n")
        self._unfinished[index] = lines.pop()
        if not data or everything:
            if self._unfinished[index]:
                lines.append(self._unfinished[index])
            self._selector.unregister(stdout.fileno())
            stdout.close()
        for line in lines:
            self._out.write(b"node%d | %s\n" % (index + 1, line))
        self._out.flush()
        return lines

    def stop(self) -> None:
        """SIGTERM to every node at once, then wait for each (killed if it lingers)."""
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for index, process in enumerate(self._processes):
            _wait_or_kill(process)
            self._read(index, everything=True)
        self._selector.close()


if __name__ == "__main__":
    sys.exit(main())
