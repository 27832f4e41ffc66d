"""
The bench scenarios, run inside the load generator (L{bench.loadgen}).

Each is C{async def scenario(gen, params) -> dict}: it connects its clients,
measures one phase with a L{Meter} and returns plain numbers. Every loop is
bounded in count and in time; a server that stops making progress ends the
phase (after C{stall} seconds) and shows up as losses.
"""

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.loadgen import Client, LoadGen, Meter, OnMessage, Tracker, client_tls, payload
from bench.servers import raise_nofile

Params = dict[str, Any]
Result = dict[str, Any]

MESSAGE_SIZE = 64
_VICTIM = re.compile(r"\bvictim\b")
STALL_S = 10.0
NOFILE_RESERVE = 100  # descriptors a server or the load generator needs besides its clients


class Flow:
    """Messages from one sender to one target, at most C{window} unanswered."""

    def __init__(self, number: int, sender: Client, prefix: bytes, quota: int, window: int) -> None:
        self.number = number
        self.sender = sender
        self.prefix = prefix
        self.quota = quota
        self.window = window
        self.sent = 0
        self.done = 0  # messages fully delivered

    def pump(self, size: int = MESSAGE_SIZE) -> None:
        """Send as many messages as the window allows, in one write."""
        count = min(self.window - (self.sent - self.done), self.quota - self.sent)
        if count <= 0:
            return
        first = self.sent
        self.sent += count
        self.sender.write(
            b"".join(
                self.prefix + payload(self.number, seq, size) + b"\r\n"
                for seq in range(first, first + count)
            )
        )

    def send_one(self, size: int = MESSAGE_SIZE) -> None:
        """Send the next message on its own, regardless of the window."""
        self.sender.write(self.prefix + payload(self.number, self.sent, size) + b"\r\n")
        self.sent += 1


def _losses(expected: int, tracker: Tracker) -> int:
    return max(0, expected - tracker.delivered)


def _cost(measured: dict[str, float], count: int) -> float | None:
    """Server CPU ms per 1,000 of C{count}."""
    if not count:
        return None
    return round(measured["server_cpu_s"] * 1e6 / count, 2)


async def _delivered(
    gen: LoadGen,
    meter: Meter,
    tracker: Tracker,
    expected: int,
    stall: float = STALL_S,
    limit: float = 600,
    rate: str = "msgs_per_s",
) -> Result:
    """
    Wait until C{expected} messages have come (see L{LoadGen.wait_for} for
    C{stall} and C{limit}), then read C{meter}: the figures of a phase of
    deliveries, its throughput under the name C{rate}.
    """
    await gen.wait_for(
        lambda: tracker.delivered >= expected, lambda: tracker.delivered, stall, limit
    )
    measured = meter.read()
    return {
        **measured,
        "delivered": tracker.delivered,
        "expected": expected,
        "losses": _losses(expected, tracker),
        "disorder": tracker.disorder,
        rate: round(tracker.delivered / measured["elapsed_s"]),
        "cpu_ms_per_1000": _cost(measured, tracker.delivered),
        "rss_kib": gen.server_rss_kib(),
        **tracker.latency_ms(),
    }


async def _pairs(gen: LoadGen, pairs: int, quota: int, window: int) -> tuple[list[Flow], list[str]]:
    """Connect C{pairs} sender/receiver pairs; flow i goes from C{s<i>} to C{r<i>}."""
    nicks = [(f"s{i}", True) for i in range(pairs)] + [(f"r{i}", False) for i in range(pairs)]
    clients, failures = await gen.connect(nicks)
    flows = [
        Flow(i, clients[i], gen.adapter.dm_prefix(f"r{i}"), quota, window) for i in range(pairs)
    ]
    return flows, failures


def _refill_windows(gen: LoadGen, flows: list[Flow], record: OnMessage) -> None:
    """
    Have C{gen} C{record} each message of C{flows} as it comes, and after each
    read send what the windows of the flows that got messages allow again.
    """
    dirty: set[Flow] = set()

    def on_message(client: Client, flow: int, seq: int, sent: int, now: int) -> None:
        record(client, flow, seq, sent, now)
        flows[flow].done += 1
        dirty.add(flows[flow])

    def after_data() -> None:
        for flow in dirty:
            flow.pump()
        dirty.clear()

    gen.on_message, gen.after_data = on_message, after_data


async def dm_throughput(gen: LoadGen, params: Params) -> Result:
    """C{pairs} pairs each send C{messages} DMs, at most C{window} in flight per pair."""
    pairs, quota, window = params["pairs"], params["messages"], params["window"]
    flows, failures = await _pairs(gen, pairs, quota, window)
    if failures:
        return {"error": f"{len(failures)} clients failed to register: {failures[0]}"}
    tracker = Tracker()
    _refill_windows(gen, flows, tracker.record)
    expected = pairs * quota
    meter = Meter(gen.server_pid)
    for flow in flows:
        flow.pump()
    return await _delivered(gen, meter, tracker, expected)


def _connect_as(gen: LoadGen, params: Params) -> None:
    """How the clients connect: with C{"tls"}, over TLS; from C{"sources"} addresses in turn."""
    if params.get("tls"):
        gen.tls = client_tls()
    sources = params.get("sources", 0)
    if sources:
        # 127.0.0.2, .3, ...: all loopback, each with the ephemeral port range to itself.
        gen.sources = tuple(f"127.0.0.{2 + n}" for n in range(sources))


async def dm_trickle(gen: LoadGen, params: Params) -> Result:
    """
    C{pairs} pairs each send C{messages} DMs as people do: one line per
    write, at most C{window} in flight, the next one written as soon as an
    earlier one arrives, so the server reads one or two lines at a time.
    """
    pairs, quota, window = params["pairs"], params["messages"], params["window"]
    _connect_as(gen, params)
    flows, failures = await _pairs(gen, pairs, quota, window)
    if failures:
        return {"error": f"{len(failures)} clients failed to register: {failures[0]}"}
    tracker = Tracker()
    reads = 0

    def on_message(client: Client, flow: int, seq: int, sent: int, now: int) -> None:
        tracker.record(client, flow, seq, sent, now)
        trickle = flows[flow]
        trickle.done += 1
        if trickle.sent < trickle.quota:
            trickle.send_one()

    def after_data() -> None:
        nonlocal reads
        reads += 1

    gen.on_message, gen.after_data = on_message, after_data
    expected = pairs * quota
    meter = Meter(gen.server_pid)
    for _ in range(min(window, quota)):
        for flow in flows:  # round robin, so that one sender's lines start out apart
            flow.send_one()
    figures = await _delivered(gen, meter, tracker, expected)
    # How many DMs a receiver got per read: the server's writes, as the clients saw them.
    figures["dms_per_read"] = round(tracker.delivered / reads, 2) if reads else None
    return figures


async def _paced(flows: list[Flow], rate: float, duration: float) -> int:
    """Send DMs round-robin over C{flows} at C{rate} per second for C{duration} seconds."""
    total = int(rate * duration)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            flows[sent % len(flows)].send_one()
            sent += 1
        await asyncio.sleep(0.001)
    return sent


async def dm_latency(gen: LoadGen, params: Params) -> Result:
    """C{pairs} pairs send DMs at a fixed total C{rate} for C{duration} s."""
    pairs, rate, duration = params["pairs"], params["rate"], params["duration"]
    flows, failures = await _pairs(gen, pairs, 0, 0)
    if failures:
        return {"error": f"{len(failures)} clients failed to register: {failures[0]}"}
    tracker = Tracker()
    gen.on_message = tracker.record
    meter = Meter(gen.server_pid)
    sent = await _paced(flows, rate, duration)
    return await _delivered(gen, meter, tracker, sent, stall=5.0, limit=5.0)


async def room_fanout(gen: LoadGen, params: Params) -> Result:
    """C{members} join one room; one of them sends C{messages}, at most C{window} in flight."""
    members, messages, window = params["members"], params["messages"], params["window"]
    nicks = [(f"m{i}", i == 0) for i in range(members)]
    clients, failures = await gen.connect(nicks)
    if failures:
        return {"error": f"{len(failures)} clients failed to register: {failures[0]}"}
    room = "bench"
    for client in clients:  # one at a time: a join tells every member so far
        client.joined = gen.loop.create_future()
        client.write(gen.adapter.join(room))
        await asyncio.wait_for(client.joined, 30)
    await asyncio.sleep(1.0)  # let the join notices drain before measuring
    receivers = members if gen.adapter.echoes_room_messages else members - 1
    flow = Flow(0, clients[0], gen.adapter.room_prefix(room), messages, window)
    counts = [0] * messages
    tracker = Tracker()
    wake = False

    def on_message(client: Client, number: int, seq: int, sent: int, now: int) -> None:
        nonlocal wake
        tracker.record(client, number, seq, sent, now)
        counts[seq] += 1
        if counts[seq] == receivers:
            flow.done += 1
            wake = True

    def after_data() -> None:
        nonlocal wake
        if wake:
            wake = False
            flow.pump()

    gen.on_message, gen.after_data = on_message, after_data
    expected = messages * receivers
    meter = Meter(gen.server_pid)
    flow.pump()
    figures = await _delivered(gen, meter, tracker, expected, rate="deliveries_per_s")
    return {**figures, "members": members, "receivers_per_message": receivers}


async def idle_connections(gen: LoadGen, params: Params) -> Result:
    """
    Open and register C{connections} clients that then stay idle; RSS per
    connection, and the time and server CPU it took to register them all.

    Each client is a descriptor here and one in the server: where the hard
    RLIMIT_NOFILE cannot be raised that far, fewer are opened, and the
    result says so (C{capped}).
    """
    wanted = params["connections"]
    _connect_as(gen, params)
    limit = raise_nofile()  # the server raised its own the same way (bench.servers)
    count = min(wanted, limit - NOFILE_RESERVE)
    rss_before = gen.server_rss_kib()
    meter = Meter(gen.server_pid)
    start = time.perf_counter()
    _, failures = await gen.connect(
        [(f"i{i}", False) for i in range(count)],
        concurrency=params.get("concurrency", 8),
        timeout=60,
    )
    accept_s = time.perf_counter() - start
    measured = meter.read()
    await asyncio.sleep(1.0)
    rss_after = gen.server_rss_kib()
    registered = count - len(failures)
    result: Result = {
        **measured,
        "connections": count,
        "registered": registered,
        "refused": len(failures),
        "losses": len(failures),
        "accept_s": round(accept_s, 3),
        "register_cpu_us": round(measured["server_cpu_s"] * 1e6 / count, 1) if count else None,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_kib": rss_after,
        "kib_per_conn": None,
    }
    if count < wanted:
        result["capped"] = (
            f"{count:,} of {wanted:,}: RLIMIT_NOFILE is {limit:,} here and cannot be raised "
            f"(raising the hard limit needs CAP_SYS_RESOURCE)"
        )
    if rss_before is not None and rss_after is not None and registered:
        result["kib_per_conn"] = round((rss_after - rss_before) / registered, 2)
    if failures:
        result["first_failure"] = failures[0][:200]
    return result


async def slow_reader(gen: LoadGen, params: Params) -> Result:
    """
    A receiver stops reading while C{flooders} send it C{flood_mib} MiB; meanwhile
    C{pairs} other pairs exchange DMs at C{rate}/s. Latency of the others, server RSS.
    """
    pairs, rate, duration = params["pairs"], params["rate"], params["duration"]
    flooders, size = params["flooders"], params["flood_message"]
    quota = params["flood_mib"] * 1024 * 1024 // size // flooders
    flows, failures = await _pairs(gen, pairs, 0, 0)
    nicks = [("victim", False)] + [(f"f{i}", True) for i in range(flooders)]
    others, more_failures = await gen.connect(nicks)
    if failures or more_failures:
        first = (failures + more_failures)[0]
        return {"error": f"{len(failures + more_failures)} clients failed to register: {first}"}
    victim = others[0]
    assert victim.transport is not None
    victim.transport.pause_reading()
    floods = [
        Flow(pairs + i, client, gen.adapter.dm_prefix("victim"), quota, 0)
        for i, client in enumerate(others[1:])
    ]
    tracker = Tracker()
    gen.on_message = tracker.record
    samples: list[tuple[float, int | None]] = []
    meter = Meter(gen.server_pid)
    start = time.perf_counter()
    stop = start + duration

    async def flood() -> None:
        while time.perf_counter() < stop:
            for f in floods:
                transport = f.sender.transport
                while (
                    transport is not None
                    and not f.sender.closed
                    and transport.get_write_buffer_size() < 256 * 1024
                    and f.sent < f.quota
                ):
                    for _ in range(32):
                        f.send_one(size)
            await asyncio.sleep(0.001)

    async def sample() -> None:
        while time.perf_counter() < stop + 5:
            samples.append((round(time.perf_counter() - start, 2), gen.server_rss_kib()))
            await asyncio.sleep(0.25)

    sampler = asyncio.ensure_future(sample())
    _, sent = await asyncio.gather(flood(), _paced(flows, rate, duration))
    await gen.wait_for(lambda: tracker.delivered >= sent, lambda: tracker.delivered, 5.0, 5.0)
    measured = meter.read()
    sampler.cancel()
    unsent = sum(
        f.sender.transport.get_write_buffer_size()
        for f in floods
        if f.sender.transport is not None and not f.sender.closed
    )
    rss = [kib for _, kib in samples if kib is not None]
    return {
        **measured,
        "delivered": tracker.delivered,
        "expected": sent,
        "losses": _losses(sent, tracker),
        "disorder": tracker.disorder,
        **tracker.latency_ms(),
        "flood_mib_written": round((sum(f.sent for f in floods) * size - unsent) / 2**20, 1),
        # A server that drops the victim says so to the flooders (IRC 401 No such nick).
        "victim_dropped": victim.closed or any(_VICTIM.search(e) for e in gen.server_errors),
        "rss_start_kib": rss[0] if rss else None,
        "rss_peak_kib": max(rss) if rss else None,
        "rss_end_kib": rss[-1] if rss else None,
        "rss_kib": max(rss) if rss else None,
        "rss_samples": samples[::2],
    }


# Several nodes behind one port (bench/run --nodes).


class _Placed:
    """DM flows between clients whose nodes are known: which cross nodes, and per-node counts."""

    def __init__(self, flows: list[Flow], cross: set[int], receiver_node: list[int]) -> None:
        self.flows = flows
        self.cross = cross
        self.receiver_node = receiver_node  # per flow
        self.delivered = [0] * len(flows)  # per flow


async def _place(gen: LoadGen, pairs: int, cross: float, quota: int, window: int) -> _Placed | str:
    """
    Connect clients until every node has its share of senders and receivers,
    then pair them: every node sends and receives C{pairs / nodes} flows, and
    of each node's senders the fraction C{cross} send to a receiver on the
    next node (none when there is one node). The kernel picks each
    connection's node, so clients are connected in rounds (at most 8 x the
    clients needed) and the spare ones stay idle.

    @return: the flows, or what went wrong.
    """
    count = len(gen.node_pids)
    per_node = pairs // count
    if per_node * count != pairs:
        return f"{pairs} pairs do not split evenly over {count} nodes"
    crossing = round(per_node * cross) if count > 1 else 0
    pools: list[list[Client]] = [[] for _ in range(count)]
    connected = 0
    while min(len(pool) for pool in pools) < 2 * per_node:
        if connected > 8 * 2 * pairs:
            return f"connections did not spread over the nodes: {[len(p) for p in pools]}"
        batch = [(f"c{connected + i}", True) for i in range(2 * pairs)]
        connected += len(batch)
        clients, failures = await gen.connect(batch)
        if failures:
            return f"{len(failures)} clients failed to register: {failures[0]}"
        for client, node in zip(clients, gen.nodes_of(clients), strict=True):
            if node is None:
                return f"no node holds the connection of {client.nick}"
            pools[node].append(client)
    senders = [pool[:per_node] for pool in pools]
    receivers = [pool[per_node : 2 * per_node] for pool in pools]
    # Node k's receivers: the first get node k's own flows, the last crossing ones from node k-1.
    flows: list[Flow] = []
    cross_flows: set[int] = set()
    receiver_node: list[int] = []
    for node in range(count):
        for i, sender in enumerate(senders[node]):
            if i < crossing:
                target_node, receiver = (node + 1) % count, receivers[(node + 1) % count][-1 - i]
                cross_flows.add(len(flows))
            else:
                target_node, receiver = node, receivers[node][i - crossing]
            prefix = gen.adapter.dm_prefix(receiver.nick)
            flows.append(Flow(len(flows), sender, prefix, quota, window))
            receiver_node.append(target_node)
    return _Placed(flows, cross_flows, receiver_node)


def _split_figures(
    gen: LoadGen, placed: _Placed, measured: dict[str, Any], trackers: tuple[Tracker, Tracker]
) -> Result:
    """The figures of a run over nodes: latency of crossing and local DMs, CPU per node."""
    local, crossing = trackers
    delivered = local.delivered + crossing.delivered
    count = len(gen.node_pids)
    each = measured.get("cpu_s_each", [measured["server_cpu_s"]])
    per_node_delivered = [0] * count
    for flow, done in enumerate(placed.delivered):
        per_node_delivered[placed.receiver_node[flow]] += done
    everything = Tracker()
    everything.latencies = local.latencies + crossing.latencies
    result: Result = {
        **measured,
        "nodes": count,
        "delivered": delivered,
        "cross_delivered": crossing.delivered,
        "disorder": local.disorder + crossing.disorder,
        "msgs_per_s": round(delivered / measured["elapsed_s"]),
        # All the nodes' CPU per DM, as for one server.
        "cpu_ms_per_1000": _cost({"server_cpu_s": sum(each[:count])}, delivered),
        "node_cpu_s": each[:count],
        # Each node's CPU per DM delivered to its users (it also sent as many).
        "node_cpu_ms_per_1000": [
            _cost({"server_cpu_s": cpu}, n)
            for cpu, n in zip(each[:count], per_node_delivered, strict=True)
        ],
        **everything.latency_ms(),
        **{f"cross_{key}": value for key, value in crossing.latency_ms().items()},
        **{f"local_{key}": value for key, value in local.latency_ms().items()},
    }
    if len(each) > count:  # the Redis
        result["redis_cpu_s"] = each[count]
        result["redis_cpu_ms_per_1000"] = _cost({"server_cpu_s": each[count]}, delivered)
    return result


def _recorder(placed: _Placed, trackers: tuple[Tracker, Tracker]) -> OnMessage:
    local, crossing = trackers
    cross = placed.cross
    delivered = placed.delivered

    def record(client: Client, flow: int, seq: int, sent: int, now: int) -> None:
        (crossing if flow in cross else local).record(client, flow, seq, sent, now)
        delivered[flow] += 1

    return record


def _meter(gen: LoadGen) -> Meter:
    pids = gen.node_pids + ((gen.redis_pid,) if gen.redis_pid is not None else ())
    return Meter(*pids)


async def nodes_dm_throughput(gen: LoadGen, params: Params) -> Result:
    """
    As dm-throughput, over every node behind the port: C{pairs} flows, the
    fraction C{cross} of them from a user on one node to a user on another.
    """
    placed = await _place(
        gen, params["pairs"], params["cross"], params["messages"], params["window"]
    )
    if isinstance(placed, str):
        return {"error": placed}
    trackers = (Tracker(), Tracker())
    flows = placed.flows
    _refill_windows(gen, flows, _recorder(placed, trackers))
    expected = len(flows) * params["messages"]
    meter = _meter(gen)
    for flow in flows:
        flow.pump()
    await gen.wait_for(
        lambda: sum(t.delivered for t in trackers) >= expected,
        lambda: sum(t.delivered for t in trackers),
        STALL_S,
        600,
    )
    measured = meter.read()
    result = _split_figures(gen, placed, measured, trackers)
    return {**result, "expected": expected, "losses": max(0, expected - result["delivered"])}


async def nodes_dm_latency(gen: LoadGen, params: Params) -> Result:
    """As dm-latency (a fixed total C{rate}), over every node; crossing DMs measured apart."""
    placed = await _place(gen, params["pairs"], params["cross"], 0, 0)
    if isinstance(placed, str):
        return {"error": placed}
    trackers = (Tracker(), Tracker())
    gen.on_message = _recorder(placed, trackers)
    meter = _meter(gen)
    sent = await _paced(placed.flows, params["rate"], params["duration"])

    def delivered() -> int:
        return trackers[0].delivered + trackers[1].delivered

    await gen.wait_for(lambda: delivered() >= sent, delivered, 5.0, 5.0)
    measured = meter.read()
    result = _split_figures(gen, placed, measured, trackers)
    return {**result, "expected": sent, "losses": max(0, sent - result["delivered"])}


SCENARIOS: dict[str, Callable[[LoadGen, Params], Awaitable[Result]]] = {
    "nodes-dm-throughput": nodes_dm_throughput,
    "nodes-dm-latency": nodes_dm_latency,
    "dm-throughput": dm_throughput,
    "dm-latency": dm_latency,
    "dm-trickle": dm_trickle,
    "room-fanout": room_fanout,
    "idle-connections": idle_connections,
    "slow-reader": slow_reader,
}
