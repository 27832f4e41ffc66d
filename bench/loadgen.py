"""
The load generator: many chat clients in one asyncio process.

It is started by L{bench.run} as C{python -m bench.loadgen}, pinned to its
own CPU, runs one scenario (L{bench.scenarios}) against one server and
prints the result as one JSON object. It speaks chatroute's line protocol
or IRC through an adapter (L{bench.adapters}).

Every message carries a payload word C{M<flow>.<seq>.<sent_ns>.xxx...},
padded to the message size, so the receiving client can tell latency
(C{perf_counter_ns} of this process at send and at receipt), losses,
duplicates and reordering.
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from bench.adapters import Adapter, ServerError, adapter_for
from bench.servers import CLOCK_TICKS, cpu_seconds, rss_kib

HOST = "127.0.0.1"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2


def client_tls() -> ssl.SSLContext:
    """
    TLS for the bench's clients. The server's certificate is a throwaway
    self-signed one made for the run, so it is not checked: the handshake
    happens before the measured phase either way.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


OnMessage = Callable[["Client", int, int, int, int], None]


def payload(flow: int, seq: int, size: int) -> bytes:
    """A message payload stamped with the send time, padded with C{x} to C{size} bytes."""
    return (b"M%d.%d.%d." % (flow, seq, time.perf_counter_ns())).ljust(size, b"x")


class Client(asyncio.Protocol):
    """One chat client: registers, sends what it is told, hands payloads to the scenario."""

    def __init__(self, gen: "LoadGen", nick: str, sender: bool) -> None:
        self.gen = gen
        self.nick = nick
        self.sender = sender
        loop = gen.loop
        self.registered: asyncio.Future[None] = loop.create_future()
        self.joined: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.next_seq: dict[int, int] = {}
        self.closed = False
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Disable Nagle and register."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self.gen.adapter.register(self.nick, self.sender))

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever is still awaited; count the loss if the bench did not close it."""
        self.closed = True
        if not self.gen.closing:
            self.gen.lost_connections += 1
        error = ConnectionError(f"{self.nick}: connection lost ({exc!r})")
        for future in (self.registered, self.joined):
            if future is not None and not future.done():
                future.set_exception(error)

    def data_received(self, data: bytes) -> None:
        """Split into lines; payloads go to the scenario, the rest to the adapter."""
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        now = time.perf_counter_ns()
        on_message = self.gen.on_message
        for line in lines:
            word = line[line.rfind(b" ") + 1 :]
            if word[:1] == b":":
                word = word[1:]
            if word[:1] == b"M":
                parts = word[1:].split(b".", 3)
                if len(parts) == 4 and parts[2].isdigit():
                    on_message(self, int(parts[0]), int(parts[1]), int(parts[2]), now)
                    continue
            self._control(line)
        self.gen.after_data()

    def _control(self, line: bytes) -> None:
        reply = self.gen.adapter.control(line)
        if reply.answer and self.transport is not None:
            self.transport.write(reply.answer)
        if reply.registered and not self.registered.done():
            self.registered.set_result(None)
        if reply.joined and self.joined is not None and not self.joined.done():
            self.joined.set_result(None)
        if reply.error:
            for future in (self.registered, self.joined):
                if future is not None and not future.done():
                    future.set_exception(ServerError(f"{self.nick}: {reply.error}"))
                    return
            self.gen.server_errors.append(f"{self.nick}: {reply.error}")

    def write(self, data: bytes) -> None:
        """Send bytes unless the connection is gone."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def reset(self) -> None:
        """Close at once with a RST (SO_LINGER 0), leaving no TIME_WAIT behind."""
        if self.transport is None or self.closed:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class Tracker:
    """Counts deliveries and reordering, and keeps every latency in ns."""

    def __init__(self) -> None:
        self.delivered = 0
        self.disorder = 0
        self.latencies: list[int] = []
        self.last_progress = time.monotonic()

    def record(self, client: Client, flow: int, seq: int, sent_ns: int, now_ns: int) -> None:
        """One payload arrived at C{client}."""
        expected = client.next_seq.get(flow, 0)
        if seq != expected:
            self.disorder += 1
        client.next_seq[flow] = seq + 1
        self.delivered += 1
        self.latencies.append(now_ns - sent_ns)

    def latency_ms(self) -> dict[str, float | None]:
        """p50, p99 and max latency in ms (None if nothing arrived)."""
        if not self.latencies:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None}
        ordered = sorted(self.latencies)

        def at(fraction: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6, 3)

        return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1] / 1e6, 3)}


class Meter:
    """
    Wall time, the servers' CPU time (C{/proc}) and this process's CPU over a
    measured phase. The first of C{pids} is the server; with several (the
    nodes of a network, its Redis) each one's CPU is kept too.
    """

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self._wall = time.perf_counter()
        self._cpu = [cpu_seconds(pid) for pid in pids]
        self._own = _own_cpu()
        self._busy = machine_busy_seconds()

    def read(self) -> dict[str, Any]:
        """Elapsed seconds, server CPU seconds, and load generator CPU as % of one core."""
        elapsed = time.perf_counter() - self._wall
        each = []
        for pid, before in zip(self.pids, self._cpu, strict=True):
            try:
                each.append(round(cpu_seconds(pid) - before, 3))
            except OSError:
                each.append(float("nan"))
        own = _own_cpu() - self._own
        others = machine_busy_seconds() - self._busy - own - sum(each)
        measured: dict[str, Any] = {
            "elapsed_s": round(elapsed, 3),
            "server_cpu_s": each[0],
            "loadgen_cpu_pct": round(100 * own / elapsed, 1) if elapsed else 0.0,
            # CPU used by everything else on the machine: noise in the figures.
            "other_cpu_pct": round(100 * max(0.0, others) / elapsed, 1) if elapsed else 0.0,
        }
        if len(each) > 1:
            measured["cpu_s_each"] = each
        return measured


def machine_busy_seconds() -> float:
    """
    CPU seconds all cores have spent running processes since boot (C{/proc/stat}
    user, nice and system; interrupt time is left out, as loopback traffic of
    the bench itself is counted there).
    """
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:4]]
    return sum(ticks) / CLOCK_TICKS


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoadGen:
    """Shared state of one run: the loop, the adapter, the server, and the scenario's hooks."""

    # How clients connect; a scenario may change them before it connects any.
    tls: ssl.SSLContext | None = None  # speak TLS to the server
    sources: tuple[str, ...] = ()  # local addresses to connect from, in turn
    _opened = 0

    def __init__(
        self, adapter: Adapter, port: int, server_pid: int, node_pids: tuple[int, ...] = ()
    ) -> None:
        """
        @param node_pids: the processes of all the nodes behind C{port}, when
            several serve it (the first is C{server_pid}); else empty.
        """
        self.loop = asyncio.get_running_loop()
        self.adapter = adapter
        self.port = port
        self.server_pid = server_pid
        self.node_pids = node_pids or (server_pid,)
        self.closing = False
        self.lost_connections = 0
        self.server_errors: list[str] = []
        self.clients: list[Client] = []
        self.redis_pid: int | None = None
        self.on_message: OnMessage = lambda client, flow, seq, sent, now: None
        self.after_data: Callable[[], None] = lambda: None

    def server_alive(self) -> bool:
        """Whether the server's processes (every node) still run (a zombie does not)."""
        for pid in self.node_pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return False
            except OSError:
                return False
        return True

    def server_rss_kib(self) -> int | None:
        """The server's RSS, or None once it is gone."""
        try:
            return rss_kib(self.server_pid) if self.server_alive() else None
        except OSError:
            return None

    async def connect(
        self, nicks: list[tuple[str, bool]], concurrency: int = 8, timeout: float = 30.0
    ) -> tuple[list[Client], list[str]]:
        """
        Connect and register one client per C{(nick, is_sender)}, C{concurrency} at a time.

        @return: the clients in C{nicks} order (failed ones included, closed)
            and a description of each failure.
        """
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def one(nick: str, sender: bool) -> Client:
            client = Client(self, nick, sender)
            async with gate:
                try:
                    await asyncio.wait_for(self._register(client), timeout)
                except (OSError, TimeoutError, ServerError) as error:
                    failures.append(f"{nick}: {error!r}")
                    client.reset()
            return client

        clients = list(await asyncio.gather(*(one(nick, sender) for nick, sender in nicks)))
        self.clients.extend(clients)
        return clients, failures

    async def _register(self, client: Client) -> None:
        if self.sources or self.tls is not None:
            await self._open(client)
        else:
            await self.loop.create_connection(lambda: client, HOST, self.port)
        await client.registered

    async def _open(self, client: Client) -> None:
        """Connect C{client} from the next of L{sources} (if any), over TLS (if set)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if self.sources:
                source = self.sources[self._opened % len(self.sources)]
                self._opened += 1
                # connect() picks the port then, needing only the 4-tuple to be unique,
                # so each source address has the whole ephemeral range to itself.
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            await self.loop.sock_connect(sock, (HOST, self.port))
        except BaseException:
            sock.close()
            raise
        await self.loop.create_connection(
            lambda: client, sock=sock, ssl=self.tls, server_hostname=HOST if self.tls else None
        )

    async def wait_for(
        self, done: Callable[[], bool], progress: Callable[[], int], stall: float, limit: float
    ) -> bool:
        """
        Wait until C{done()}; give up after C{stall} s without C{progress()} changing,
        after C{limit} s in all, or when the server dies.

        @return: whether C{done()} became true.
        """
        start = last_change = time.monotonic()
        last = progress()
        while not done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            if progress() != last:
                last, last_change = progress(), now
            if now - last_change > stall or now - start > limit or not self.server_alive():
                return done()
        return True

    def nodes_of(self, clients: list[Client]) -> list[int | None]:
        """
        Which node took each client's connection (an index into
        C{node_pids}; None if none is found): the kernel decides, so it is
        read from C{/proc}, matching each node's sockets to the clients'
        ports.
        """
        inodes = {
            inode: index for index, pid in enumerate(self.node_pids) for inode in _sockets(pid)
        }
        by_port: dict[int, int] = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as rows:
                    next(rows)
                    for row in rows:
                        fields = row.split()
                        node = inodes.get(fields[9])
                        if node is not None:
                            by_port[int(fields[2].rsplit(":", 1)[1], 16)] = node
            except OSError:
                continue
        found: list[int | None] = []
        for client in clients:
            sock = None if client.transport is None else client.transport.get_extra_info("socket")
            found.append(None if sock is None else by_port.get(sock.getsockname()[1]))
        return found

    def close_all(self) -> None:
        """Reset every client connection."""
        self.closing = True
        for client in self.clients:
            client.reset()


def _sockets(pid: int) -> set[str]:
    """The inodes of the sockets the process holds open (C{/proc/PID/fd})."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from bench import scenarios

    node_pids = tuple(int(pid) for pid in args.node_pids.split(",") if pid)
    gen = LoadGen(adapter_for(args.protocol), args.port, args.server_pid, node_pids)
    gen.redis_pid = args.redis_pid
    scenario = scenarios.SCENARIOS[args.scenario]
    try:
        result = await scenario(gen, json.loads(args.params))
    finally:
        gen.close_all()
        await asyncio.sleep(0.1)
    result["server_alive"] = gen.server_alive()
    result["lost_connections"] = gen.lost_connections
    result["server_errors"] = len(gen.server_errors)
    if gen.server_errors:
        result["first_server_error"] = gen.server_errors[0][:200]
    return result


def main() -> None:
    """Run one scenario against one server and print the result as JSON."""
    parser = argparse.ArgumentParser(description="chatroute bench load generator")
    parser.add_argument("--protocol", required=True, choices=["chatroute", "irc", "irc-oper"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--params", default="{}", help="scenario parameters as JSON")
    parser.add_argument(
        "--node-pids", default="", help="every node behind --port (comma-separated)"
    )
    parser.add_argument("--redis-pid", type=int, default=None, help="the nodes' Redis")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(_main(args))))


if __name__ == "__main__":
    main()
