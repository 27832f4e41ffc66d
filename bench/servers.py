"""
The servers under test: installing, starting and stopping them, and reading
their CPU time and memory from C{/proc}.

Every server runs as its own process, pinned with C{taskset} to the server
CPU, listening on a free loopback port, with RLIMIT_NOFILE raised to the hard
limit so that the idle-connection scenario measures the server, not the
default limit of 1,024 descriptors.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    """In the child before exec: as many descriptors as the hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                preexec_fn=_raise_nofile,
            )
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


# The limits of chatroute that the bench lifts, as it relaxes ngircd's flood
# limits; the run prints them. The slow-consumer limit (--max-send-buffer)
# stays on: the slow-reader scenario measures it. Storage stays on too: the
# server keeps accounts and room history in an SQLite file in its directory.
CHATROUTE_RELAXED = [
    "--max-per-address=0",  # every bench client comes from 127.0.0.1
    "--max-connections=0",  # idle-connections-10k opens 10,000
    "--flood-rate=0",  # bench senders go far beyond a person's lines per second
    "--idle-timeout=0",  # idle clients are the point of idle-connections
]


def _chatroute(port: int, workdir: Path) -> list[str]:
    return [
        str(VENV_BIN / "twistd"),
        "--nodaemon",
        "--pidfile=",
        f"--logfile={workdir / 'twistd.log'}",
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
