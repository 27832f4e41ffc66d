"""
The servers under test: installing, starting and stopping them, and reading
their CPU time and memory from C{/proc}.

Every server runs as its own process, pinned with C{taskset} to the server
CPU, listening on a free loopback port, with RLIMIT_NOFILE raised (to
131,072 where the bench may raise the hard limit, else to the hard limit) so
that the idle-connection scenarios measure the server, not the default limit
of 1,024 descriptors.
"""

import contextlib
import ipaddress
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatroute.nodes import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
BENCH = ROOT / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

SERVER_CPU = 0
LOADGEN_CPU = 1


class Unavailable(Exception):
    """The server cannot be run on this machine; the message says why."""


def cpu_seconds(pid: int) -> float:
    """
    CPU time the process has used, in seconds: the sum over its threads of
    C{/proc/PID/task/TID/schedstat}, counted in nanoseconds, where the
    kernel has it; else user plus system time from C{/proc/PID/stat}, in
    clock ticks (10 ms, too coarse for a run of a fraction of a second).
    """
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        return total / 1e9
    except (FileNotFoundError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may contain spaces; fields after it are fixed.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident set size of the process in KiB (C{/proc/PID/statm})."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _raise_nofile() -> None:
    """In the child before exec: as many descriptors as L{raise_nofile} can get."""
    raise_nofile()


NOFILE_WANTED = 131_072
"""Descriptors the bench's processes ask for: 50,000 idle connections and room to spare."""


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """
    Raise this process's RLIMIT_NOFILE: the hard limit to C{wanted} (at most
    C{/proc/sys/fs/nr_open}) where we may (root), the soft limit to the hard.

    @return: the soft limit now in force.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open("/proc/sys/fs/nr_open") as nr_open:
            ceiling = int(nr_open.read())
    except (OSError, ValueError):
        ceiling = hard
    if hard != resource.RLIM_INFINITY and hard < min(wanted, ceiling):
        # Not allowed to raise the hard limit (not root): keep it.
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, ceiling),) * 2)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _spawn(argv: list[str], output: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """
    Start a server's process in C{cwd}: nothing on its standard input, its
    standard output and error to the file C{output}, and as many descriptors
    as L{raise_nofile} can get.
    """
    with output.open("wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            preexec_fn=_raise_nofile,
        )


@dataclass
class Running:
    """A started server: its process, port, wire protocol and scratch directory."""

    name: str
    protocol: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    log: Path

    @property
    def pid(self) -> int:
        """The server's process id (C{taskset} execs the server in place)."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server's output, for failure reports."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the server (kill it after 5 s) and remove its scratch directory."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Peer:
    """How to run one server: its wire protocol, whether it has rooms, its command."""

    name: str
    protocol: str  # a loadgen adapter: "chatroute", "irc" or "irc-oper"
    description: str
    command: Callable[[int, Path], list[str]]
    has_rooms: bool = True
    check: Callable[[], str | None] = field(default=lambda: None)

    def start(self) -> Running:
        """Start the server on a free port and wait until it accepts connections."""
        reason = self.check()
        if reason:
            raise Unavailable(reason)
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        log = workdir / "server.log"
        argv = ["taskset", "-c", str(SERVER_CPU), *self.command(port, workdir)]
        process = _spawn(argv, log, workdir)
        running = Running(self.name, self.protocol, port, process, workdir, log)
        try:
            _wait_listening(running)
        except BaseException:
            running.stop()
            raise
        return running


def _wait_listening(running: Running, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running.alive():
            raise RuntimeError(f"{running.name} exited at start: {running.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", running.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{running.name} did not listen within {timeout:.0f} s")


# The limits of chatroute that the bench lifts in every scenario, as it relaxes
# ngircd's flood limits; the run prints them. Everything else runs at its
# production defaults: the idle timeout (900 s), the connection cap (10,000;
# a scenario that needs more lifts it, see Setup) and the slow-consumer limit
# (--max-send-buffer, which the slow-reader scenario measures). Storage stays
# on too: the server keeps accounts and room history in an SQLite file in its
# directory.
CHATROUTE_RELAXED = [
    "--max-per-address=0",  # every bench client comes from 127.0.0.1 (or a few 127.0.0.x)
    "--flood-rate=0",  # bench senders go far beyond a person's lines per second
]


def _chatroute(port: int, workdir: Path, log: str = "twistd.log") -> list[str]:
    return [
        str(VENV_BIN / "twistd"),
        "--nodaemon",
        "--pidfile=",
        f"--logfile={workdir / log}",
        "chatroute",
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        f"--db={workdir / 'chatroute.db'}",
        *CHATROUTE_RELAXED,
    ]


def _tutorial(port: int, workdir: Path) -> list[str]:
    return [str(PYTHON), str(BENCH / "peers" / "tutorial_server.py"), "--port", str(port)]


def _miniircd(port: int, workdir: Path) -> list[str]:
    # miniircd refuses to run as root unless told which user to stay.
    root = ["--setuid", "root"] if os.getuid() == 0 else []
    return [str(VENV_BIN / "miniircd"), "--listen", "127.0.0.1", "--ports", str(port), *root]


NGIRCD_CONF = """\
# Written by bench/servers.py for one run; see docs/performance.md.
[Global]
\tName = bench.invalid
\tInfo = chatroute bench peer
\tAdminInfo1 = bench
\tAdminInfo2 = bench
\tAdminEMail = bench@bench.invalid
\tListen = 127.0.0.1
\tPorts = {port}
\tPidFile = {workdir}/ngircd.pid
\tMotdPhrase = "bench"
[Limits]
\t# No caps on connections (per server or per IP) or joins.
\tMaxConnections = 0
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tMaxNickLength = 30
\t# Flood limits relaxed: no penalty time, so a busy client is never delayed.
\tMaxPenaltyTime = 0
\tPingTimeout = 600
\tPongTimeout = 600
[Options]
\tDNS = no
\tIdent = no
\tPAM = no
\tIncludeDir = {workdir}
[Operator]
\t# Bench clients OPER up and set user mode +F ("relaxed flood protection"),
\t# which raises the commands handled per read from 3 to 10.
\tName = bench
\tPassword = bench
"""


def _ngircd(port: int, workdir: Path) -> list[str]:
    conf = workdir / "ngircd.conf"
    conf.write_text(NGIRCD_CONF.format(port=port, workdir=workdir))
    return [_ngircd_binary() or "ngircd", "--nodaemon", "--config", str(conf)]


def _ngircd_binary() -> str | None:
    return shutil.which("ngircd") or (
        "/usr/sbin/ngircd" if Path("/usr/sbin/ngircd").exists() else None
    )


def _check_miniircd() -> str | None:
    if not (VENV_BIN / "miniircd").exists():
        return "miniircd is not installed (pip install -r bench/requirements.txt)"
    return None


def _check_ngircd() -> str | None:
    if _ngircd_binary() is None:
        return "ngircd is not installed and apt-get was not usable to install it"
    return None


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer("chatroute", "chatroute", "this project (twistd chatroute)", _chatroute),
        Peer(
            "tutorial",
            "chatroute",
            "the select() tutorial server (bench/peers)",
            _tutorial,
            has_rooms=False,
        ),
        Peer("miniircd", "irc", "miniircd (PyPI), Python IRC", _miniircd, check=_check_miniircd),
        Peer("ngircd", "irc-oper", "ngircd (Debian), C IRC", _ngircd, check=_check_ngircd),
    )
}


def install_missing(names: list[str], log: Callable[[str], None]) -> None:
    """Install the peers' software that is missing: miniircd with pip, ngircd with apt-get."""
    if "miniircd" in names and _check_miniircd():
        log("installing miniircd into .venv with pip")
        subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "--quiet", "-r", str(BENCH / "requirements.txt")],
            check=False,
        )
    if "ngircd" in names and _check_ngircd():
        apt = shutil.which("apt-get")
        if apt is None or os.getuid() != 0:
            log("ngircd: apt-get not usable (not installed or not root); skipping it")
            return
        log("installing ngircd with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            [apt, "install", "-y", "-qq", "ngircd"], check=False, env=env, stdout=subprocess.DEVNULL
        )
        # The package starts a system-wide ngircd on port 6667; the bench runs its own.
        subprocess.run(["service", "ngircd", "stop"], check=False, capture_output=True)


def python_info() -> str:
    """The interpreter the Python servers run on."""
    return f"{sys.implementation.name} {sys.version.split()[0]}"


# Several chatroute nodes on one port (bench/run --nodes): see docs/performance.md,
# "Several nodes".

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
BUDGET_PERIOD_US = 10_000
"""The CFS period of a node's CPU budget: short, so that a throttled node waits at most 10 ms."""


def budget_unavailable() -> str | None:
    """Why a node's CPU cannot be capped here (cgroup v1 CPU quotas), or None if it can."""
    if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 CPU controller at {CGROUP_CPU}"
    if not os.access(CGROUP_CPU, os.W_OK):
        return f"{CGROUP_CPU} is not writable (needs root)"
    return None


class CpuBudget:
    """
    A cgroup (v1, C{cpu} controller) that lets its processes use at most
    C{share} of one core: C{cfs_quota_us} out of every L{BUDGET_PERIOD_US}.
    """

    def __init__(self, name: str, share: float) -> None:
        self.path = CGROUP_CPU / name
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(BUDGET_PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(share * BUDGET_PERIOD_US)))

    def add(self, pid: int) -> None:
        """Put the process (and the threads it will start) under the budget."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled_s(self) -> float:
        """Seconds the kernel held the budget's processes back for want of quota."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            name, value = line.split()
            if name == "throttled_time":
                return int(value) / 1e9
        return 0.0

    def remove(self) -> None:
        """Remove the cgroup (once its processes have exited)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)  # the last process is still being reaped


@dataclass
class Network:
    """
    chatroute nodes listening on one loopback port, sharing a private Redis
    (if more than none) and one SQLite file in one scratch directory.
    """

    port: int
    nodes: list[subprocess.Popen[bytes]]
    logs: list[Path]
    workdir: Path
    redis: "PrivateRedis | None"
    budgets: list[CpuBudget]

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes]

    @property
    def redis_pid(self) -> int | None:
        return None if self.redis is None else self.redis.pid

    def alive(self) -> bool:
        return all(node.poll() is None for node in self.nodes)

    def publishes(self) -> int | None:
        """How many C{PUBLISH} commands the Redis has run (C{INFO commandstats})."""
        if self.redis is None:
            return None
        try:
            with socket.create_connection(("127.0.0.1", self.redis.port), timeout=2) as sock:
                sock.sendall(b"INFO commandstats\r\n")
                reply = b""
                while not reply.endswith(b"\r\n\r\n") and len(reply) < 1 << 20:
                    data = sock.recv(65536)
                    if not data:
                        break
                    reply += data
        except OSError:
            return None
        for line in reply.decode(errors="replace").splitlines():
            if line.startswith("cmdstat_publish:"):
                return int(line.split("calls=", 1)[1].split(",", 1)[0])
        return 0

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(
            " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
            for log in self.logs
            if log.exists()
        )

    def stop(self) -> None:
        """Stop the nodes (SIGTERM, then SIGKILL after 5 s), then Redis; remove what they left."""
        for node in self.nodes:
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.wait(5)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(5)
        if self.redis is not None:
            self.redis.stop()
        for budget in self.budgets:
            budget.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_network(count: int, backplane: bool, share: float | None) -> Network:
    """
    Start C{count} chatroute nodes on one free loopback port, each pinned to
    the server CPU and, with C{share}, capped at that share of a core. With
    C{backplane} they run with C{--reuse-port --redis} on a private Redis
    pinned to the load generator's CPU; without, there is one plain node.
    Each is waited for (in step with the network, or listening) before the
    next starts, so the first creates the database.
    """
    from chatroute.nodes import PrivateRedis, install_redis_server

    if count > 1 and not backplane:
        raise ValueError("several nodes need the backplane")
    redis = None
    if backplane:
        binary = install_redis_server(lambda message: None)
        if binary is None:
            raise Unavailable("redis-server is not installed and apt-get was not usable")
        redis = PrivateRedis(binary)
        redis.start()
        pin = ["taskset", "-pc", str(LOADGEN_CPU), str(redis.pid)]
        subprocess.run(pin, check=True, capture_output=True)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    network = Network(port, [], [], workdir, redis, [])
    try:
        for number in range(1, count + 1):
            log = workdir / f"node{number}.log"
            argv = ["taskset", "-c", str(SERVER_CPU), *_chatroute(port, workdir, log.name)]
            if redis is not None:
                argv += ["--reuse-port", "--redis", redis.url]
            process = _spawn(argv, workdir / f"node{number}.out", workdir)
            network.nodes.append(process)
            network.logs.append(log)
            if share is not None:
                budget = CpuBudget(f"chatroute-bench-{os.getpid()}-{number}", share)
                network.budgets.append(budget)
                budget.add(process.pid)
            _wait_node(process, log, number, backplane)
    except BaseException:
        network.stop()
        raise
    return network


def _wait_node(process: subprocess.Popen[bytes], log: Path, number: int, backplane: bool) -> None:
    """Wait until node C{number} is in step with the network (or, alone, listens)."""
    ready = "in step at event" if backplane else "chatroute listening on"
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"node {number} exited at start (see {log})")
        text = log.read_text(errors="replace") if log.exists() else ""
        if ready in text:
            return
        time.sleep(0.05)
    raise RuntimeError(f"node {number} was not ready within 30 s")


# How a scenario runs its servers beyond the above: TLS listeners, more of
# chatroute's limits lifted, chatroute variants beside it (docs/performance.md,
# "Real traffic").

CHATROUTE_VARIANTS: dict[str, tuple[str, ...]] = {
    # chatroute with one default turned off, run beside it to measure that default's cost.
    "chatroute-noidle": ("--idle-timeout=0",),
}


@dataclass(frozen=True)
class Setup:
    """
    How one scenario runs the servers.

    @ivar lifted: chatroute options lifting more limits than L{CHATROUTE_RELAXED}
        (e.g. C{--max-connections=0} for 50,000 connections); printed with the table.
    @ivar tls: every server listens with TLS (a fresh self-signed certificate
        per run); peers that cannot are left out.
    @ivar variants: names from L{CHATROUTE_VARIANTS} to run beside chatroute.
    @ivar peers: the only peers this scenario runs (default: all that were asked for).
    @ivar once: peers run in the first of the interleaved rounds only.
    """

    lifted: tuple[str, ...] = ()
    tls: bool = False
    variants: tuple[str, ...] = ()
    peers: tuple[str, ...] | None = None
    once: tuple[str, ...] = ()


PLAIN = Setup()


def servers_for(setup: Setup, peers: Sequence[str]) -> dict[str, Peer]:
    """
    The servers of one scenario, by column name: the C{peers} asked for that
    the setup runs (with TLS, those that have it), each chatroute variant
    after chatroute.
    """
    servers: dict[str, Peer] = {}
    for name in peers:
        if setup.peers is not None and name not in setup.peers:
            continue
        peer = PEERS[name]
        if setup.tls:
            tls_command = _TLS_COMMANDS.get(name)
            if tls_command is None:
                continue
            peer = replace(peer, command=tls_command)
        if name == "chatroute":
            servers[name] = _with_options(peer, setup.lifted)
            for variant in setup.variants:
                options = (*setup.lifted, *CHATROUTE_VARIANTS[variant])
                servers[variant] = _with_options(peer, options, f"chatroute {' '.join(options)}")
        else:
            servers[name] = peer
    return servers


def without_tls(peers: Sequence[str]) -> list[str]:
    """The peers among C{peers} that the bench cannot run with TLS."""
    return [name for name in peers if name not in _TLS_COMMANDS]


def _with_options(peer: Peer, options: Sequence[str], description: str | None = None) -> Peer:
    """chatroute with more options after L{CHATROUTE_RELAXED} (the last of each one counts)."""
    if not options:
        return peer
    command = peer.command
    return replace(
        peer,
        command=lambda port, workdir: [*command(port, workdir), *options],
        description=description or peer.description,
    )


def tls_files(workdir: Path) -> tuple[Path, Path]:
    """A new private key and self-signed certificate for 127.0.0.1 in C{workdir}: their paths."""
    from chatroute.certs import make_certificate

    hosts = ["localhost", ipaddress.ip_address("127.0.0.1")]
    key_pem, cert_pem = make_certificate(hosts, 1, datetime.now(UTC))
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    key.write_bytes(key_pem)
    cert.write_bytes(cert_pem)
    return key, cert


def _chatroute_tls(port: int, workdir: Path) -> list[str]:
    from chatroute.certs import listen_description

    argv = _chatroute(port, workdir)
    key, cert = tls_files(workdir)
    argv[argv.index("--listen") + 1] = listen_description(key, cert, port, "127.0.0.1")
    return argv


def _miniircd_tls(port: int, workdir: Path) -> list[str]:
    key, cert = tls_files(workdir)
    return [*_miniircd(port, workdir), "--ssl-cert-file", str(cert), "--ssl-key-file", str(key)]


NGIRCD_TLS_CONF = """\
[SSL]
\tCertFile = {cert}
\tKeyFile = {key}
\tPorts = {port}
"""


def _ngircd_tls(port: int, workdir: Path) -> list[str]:
    # Its plain listener goes to another port, which the bench leaves alone.
    argv = _ngircd(free_port(), workdir)
    key, cert = tls_files(workdir)
    with (workdir / "ngircd.conf").open("a") as conf:
        conf.write(NGIRCD_TLS_CONF.format(cert=cert, key=key, port=port))
    return argv


_TLS_COMMANDS: dict[str, Callable[[int, Path], list[str]]] = {
    "chatroute": _chatroute_tls,
    "miniircd": _miniircd_tls,
    "ngircd": _ngircd_tls,
}
