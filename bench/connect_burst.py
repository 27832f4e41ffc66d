"""
A burst of connections: how the server's listen backlog copes.

    .venv/bin/python bench/connect_burst.py [--connections 2000] [--runs 3] [--backlogs 50,1024]

For each backlog, starts the real server (C{twistd chatroute}, as the bench
suite does, on a free loopback port, with C{--backlog N}), then opens
C{--connections} TCP connections to it as fast as one process can: every
C{connect()} is issued non-blocking, back to back, and each connection's time
is from its C{connect()} call until the kernel reports it established. The
kernel counts the connections it turned away because the accept queue was
full (C{TcpExtListenOverflows} in C{/proc/net/netstat}, what C{nstat -az}
shows); such a client retransmits its SYN after a second, which is what the
slow connect times are. Prints a line per run, then the medians side by side.

Loopback only, and bounded: a connection not established within
C{--timeout} seconds counts as failed, and every server is stopped at the end.
The counters are the whole machine's, so other traffic at the same time
would add to them.
"""

import argparse
import errno
import math
import resource
import selectors
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.servers import PEERS, Peer, Running
from chatroute.tap import DEFAULT_BACKLOG

TWISTED_BACKLOG = 50


def listen_overflows() -> int:
    """The kernel's count of connections refused for a full accept queue, so far."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(counters["ListenOverflows"])
    raise RuntimeError("no TcpExt line in /proc/net/netstat")


@dataclass
class Burst:
    """One burst: each established connection's time in seconds, failures, overflows."""

    times: list[float]
    failed: int
    overflows: int

    def percentile(self, fraction: float) -> float:
        """The connect time below which C{fraction} of the connections fall, in ms."""
        ordered = sorted(self.times) or [math.nan]
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def slow(self) -> int:
        """Connections that took over half a second: a SYN was dropped and sent again."""
        return sum(1 for seconds in self.times if seconds > 0.5)

    def summary(self) -> str:
        """The figures of the burst on one line."""
        return (
            f"overflows {self.overflows:5d}  p50 {self.percentile(0.5):7.2f} ms  "
            f"p99 {self.percentile(0.99):7.1f} ms  max {self.percentile(1):7.1f} ms  "
            f"over 0.5 s {self.slow:4d}  failed {self.failed}"
        )


def burst(port: int, count: int, timeout: float) -> Burst:
    """Open C{count} connections to 127.0.0.1:C{port} at once; close them all after."""
    selector = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}
    times: list[float] = []
    failed = 0
    before = listen_overflows()
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            started[sock] = time.perf_counter()
            result = sock.connect_ex(("127.0.0.1", port))
            if result not in (0, errno.EINPROGRESS):
                failed += 1
                continue
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while len(times) + failed < count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
                else:
                    times.append(time.perf_counter() - started[sock])
        failed = count - len(times)
        return Burst(times, failed, listen_overflows() - before)
    finally:
        selector.close()
        for sock in started:
            sock.close()


@contextmanager
def server(backlog: int) -> Iterator[Running]:
    """The real server with C{--backlog backlog}, stopped on leaving."""
    chatroute = PEERS["chatroute"]
    peer = Peer(
        f"chatroute-backlog-{backlog}",
        chatroute.frontends.line,
        f"{chatroute.description} --backlog {backlog}",
        lambda port, workdir: [*chatroute.command(port, workdir), f"--backlog={backlog}"],
    )
    running = peer.start()
    try:
        yield running
    finally:
        running.stop()


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def main() -> None:
    """Run the bursts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument(
        "--runs", type=int, default=3, help="bursts per backlog, each on a fresh server"
    )
    parser.add_argument(
        "--backlogs", default=f"{TWISTED_BACKLOG},{DEFAULT_BACKLOG}", help="comma-separated"
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds a burst may take")
    arguments = parser.parse_args()
    backlogs = [int(text) for text in arguments.backlogs.split(",")]
    _raise_nofile(arguments.connections + 100)
    somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    sys.stdout.write(
        f"{arguments.connections} connections at once to 127.0.0.1, {arguments.runs} runs "
        f"per backlog, each on a fresh server (net.core.somaxconn = {somaxconn})\n"
    )
    results: dict[int, list[Burst]] = {}
    for backlog in backlogs:
        results[backlog] = []
        for run in range(arguments.runs):
            with server(backlog) as running:
                result = burst(running.port, arguments.connections, arguments.timeout)
            results[backlog].append(result)
            sys.stdout.write(f"backlog {backlog:5d}  run {run + 1}  {result.summary()}\n")
    sys.stdout.write("\nmedians of the runs:\n")
    sys.stdout.write("backlog  overflows   p50 ms   p99 ms   max ms  over 0.5 s  failed\n")
    for backlog, bursts in results.items():
        sys.stdout.write(
            f"{backlog:7d}  {statistics.median(b.overflows for b in bursts):9.0f}"
            f"  {statistics.median(b.percentile(0.5) for b in bursts):7.1f}"
            f"  {statistics.median(b.percentile(0.99) for b in bursts):7.1f}"
            f"  {statistics.median(b.percentile(1) for b in bursts):7.1f}"
            f"  {statistics.median(b.slow for b in bursts):10.0f}"
            f"  {statistics.median(b.failed for b in bursts):6.0f}\n"
        )


if __name__ == "__main__":
    main()
