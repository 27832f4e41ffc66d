"""
Run the benchmark suite: every scenario against chatroute and its peers.

    bench/run [--quick] [--big] [--scaling] [--only SCENARIO,...] [--peers NAME,...]
    bench/run --traffic [--quick] [--only SCENARIO,...] [--peers NAME,...]
    bench/run --nodes [--quick] [--node-cpu SHARE]

Each figure is the median of C{--runs} interleaved runs (3; 5 with
C{--traffic}, but 3 with C{--quick}); each run starts a fresh server on CPU 0
and a fresh load generator on CPU 1. Prints a table and the floors' PASS/FAIL
lines for chatroute, and writes everything as JSON to
C{bench/results/<timestamp>.json}. With C{--traffic} it runs the scenarios of
real traffic and their floors instead (docs/performance.md, "Real traffic");
with C{--nodes}, chatroute alone, one node against two behind one
C{--reuse-port} port (docs/performance.md, "Several nodes").
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.loadgen import machine_busy_seconds
from bench.report import (
    columns,
    floors,
    nodes_floors,
    print_default_costs,
    print_nodes,
    print_scaling,
    print_table,
    real_floors,
)
from bench.servers import (
    BENCH,
    CHATROUTE_VARIANTS,
    LOADGEN_CPU,
    PEERS,
    PLAIN,
    PYTHON,
    ROOT,
    Network,
    Peer,
    Running,
    Setup,
    Unavailable,
    budget_unavailable,
    install_missing,
    python_info,
    servers_for,
    start_network,
    without_tls,
)

Params = dict[str, Any]

FULL: dict[str, Params] = {
    "dm-throughput": {"pairs": 50, "messages": 2000, "window": 100},
    "dm-latency": {"pairs": 50, "rate": 2000, "duration": 10},
    "room-fanout": {"members": 200, "messages": 500, "window": 10},
    "idle-connections": {"connections": 2000},
    "idle-connections-10k": {"connections": 10000},
    # Real traffic (--traffic): one line per write, so one line per read in the server.
    "dm-trickle": {"pairs": 50, "messages": 2000, "window": 1},
    "dm-trickle-1000": {"pairs": 1000, "messages": 100, "window": 1},
    "dm-trickle-tls": {"pairs": 50, "messages": 2000, "window": 1, "tls": True},
    "dm-latency-20k": {"pairs": 50, "rate": 20000, "duration": 3},
    "idle-50k": {"connections": 50000, "sources": 10, "concurrency": 32},
    "slow-reader": {
        "pairs": 10,
        "rate": 500,
        "duration": 10,
        "flooders": 4,
        "flood_message": 400,
        "flood_mib": 64,
    },
}
QUICK: dict[str, Params] = {
    **FULL,
    "dm-latency": {"pairs": 50, "rate": 2000, "duration": 3},
    "slow-reader": {**FULL["slow-reader"], "duration": 4, "flood_mib": 16},
    "dm-trickle": {**FULL["dm-trickle"], "messages": 800},
    "dm-trickle-1000": {**FULL["dm-trickle-1000"], "messages": 40},
    "dm-trickle-tls": {**FULL["dm-trickle-tls"], "messages": 800},
    "dm-latency-20k": {**FULL["dm-latency-20k"], "duration": 2},
}
QUIET_CPU = 0.15  # of one core, used by other processes before a run starts
QUIET_WAIT_S = 15.0
QUICK_QUIET_WAIT_S = 3.0
STANDARD = ["dm-throughput", "dm-latency", "room-fanout", "idle-connections", "slow-reader"]
# bench/run --traffic: the scenarios of real traffic and the batch ones their floors
# compare with (issue 12).
TRAFFIC = [
    "dm-trickle",
    "dm-trickle-1000",
    "dm-trickle-tls",
    "dm-latency",
    "dm-latency-20k",
    "dm-throughput",
    "room-fanout",
    "idle-connections",
    "idle-50k",
]
SCENARIO_OF = {
    "idle-connections-10k": "idle-connections",
    "dm-trickle-1000": "dm-trickle",
    "dm-trickle-tls": "dm-trickle",
    "dm-latency-20k": "dm-latency",
    "idle-50k": "idle-connections",
}
NOIDLE = ("chatroute-noidle",)
SETUPS: dict[str, Setup] = {
    # What each default costs: the same scenario with it off, beside chatroute.
    "dm-trickle": Setup(variants=NOIDLE),
    "idle-connections": Setup(variants=NOIDLE),
    "dm-trickle-tls": Setup(tls=True),
    # The select() peers cannot hold more than ~1,020 connections. ngircd's time to
    # register grows with the square of the connections (minutes at 20,000), and its
    # memory per connection is steady: one run of it is enough.
    "idle-50k": Setup(
        lifted=("--max-connections=0",),
        variants=NOIDLE,
        peers=("chatroute", "ngircd"),
        once=("ngircd",),
    ),
}
QUICK_SETUPS: dict[str, Setup] = {
    **SETUPS,
    "idle-50k": Setup(lifted=("--max-connections=0",), peers=("chatroute",)),
}
SCALE_POINTS = [10, 100, 1000]

# bench/run --nodes: configurations (nodes, backplane) and what each runs.
NODE_CONFIGS: dict[str, tuple[int, bool, Params]] = {
    # label: (nodes, backplane, parameters that differ from the scenario's)
    "plain": (1, False, {}),
    "1 node": (1, True, {}),
    "2 nodes": (2, True, {}),
    # The control: what two nodes sharing CPU 0 cost when no DM crosses.
    "2 nodes, none cross": (2, True, {"cross": 0.0}),
}
NODE_CPU = 0.3
"""Of a core, each node's CPU budget in the throughput scenario (see docs/performance.md)."""
# 52 pairs: 26 flows from each of 2 nodes, 13 of them crossing, so exactly half.
NODES_FULL: dict[str, tuple[str, Params, bool]] = {
    # label: (scenario, params, whether each node gets the CPU budget)
    "nodes-throughput": (
        "nodes-dm-throughput",
        {"pairs": 52, "messages": 6000, "window": 100, "cross": 0.5},
        True,
    ),
    "nodes-latency": (
        "nodes-dm-latency",
        {"pairs": 52, "rate": 2000, "duration": 10, "cross": 0.5},
        False,
    ),
}
NODES_QUICK: dict[str, tuple[str, Params, bool]] = {
    **NODES_FULL,
    "nodes-latency": (
        "nodes-dm-latency",
        {"pairs": 52, "rate": 2000, "duration": 3, "cross": 0.5},
        False,
    ),
}


def scaling_params(quick: bool) -> dict[str, tuple[str, Params]]:
    """Scenario runs of the scaling mode: C{label -> (scenario, params)}."""
    # Enough work for ~1 s of server CPU: /proc/PID/stat counts in 10 ms ticks.
    dm_total = 50_000 if quick else 200_000
    deliveries = 100_000 if quick else 400_000
    runs: dict[str, tuple[str, Params]] = {}
    for n in SCALE_POINTS:
        per_pair = max(10, dm_total // n)
        runs[f"dm-{n}-pairs"] = (
            "dm-throughput",
            {"pairs": n, "messages": per_pair, "window": min(100, per_pair)},
        )
    for n in SCALE_POINTS:
        runs[f"fanout-{n}-members"] = (
            "room-fanout",
            {"members": n, "messages": max(20, deliveries // n), "window": 10},
        )
    return runs


class Bench:
    """Runs scenarios against peers, one fresh server per run, and keeps every result."""

    def __init__(self, runs: int, log_path: Path, quiet_wait: float = QUIET_WAIT_S) -> None:
        self.runs = runs
        self.quiet_wait = quiet_wait
        self.log_path = log_path
        self.unavailable: dict[str, str] = {}
        self._server: Running | Network | None = None
        self._loadgen: subprocess.Popen[str] | None = None

    def log(self, message: str) -> None:
        """Progress on stderr, so the table on stdout stays clean."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def measure(
        self,
        label: str,
        scenario: str,
        params: Params,
        peers: list[str],
        servers: dict[str, Peer] | None = None,
        once: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """
        All runs of one scenario: C{peer -> {"median": ..., "runs": [...]}}.

        @param servers: what to run, by column (L{servers_for}); by default the C{peers}.
        @param once: columns run in the first round only.
        """
        servers = servers if servers is not None else {peer: PEERS[peer] for peer in peers}
        results: dict[str, list[dict[str, Any]]] = {peer: [] for peer in servers}
        for number in range(1, self.runs + 1):
            for peer, server in servers.items():  # interleaved: drift hits every peer alike
                if peer in self.unavailable or (number > 1 and peer in once):
                    continue
                if scenario == "room-fanout" and not server.has_rooms:
                    continue
                self.log(f"{label} run {number}/{self.runs}: {peer}")
                results[peer].append(self.one_run(peer, scenario, params, server))
        summary: dict[str, Any] = {}
        for peer, runs in results.items():
            if peer in self.unavailable:
                summary[peer] = {"status": f"skipped: {self.unavailable[peer]}"}
            elif not runs:
                summary[peer] = {"status": "n/a (no rooms)"}
            else:
                summary[peer] = {"status": _status(runs), "median": _median(runs), "runs": runs}
        return summary

    def one_run(
        self, peer: str, scenario: str, params: Params, how: Peer | None = None
    ) -> dict[str, Any]:
        """Start the server (C{how}, by default the peer as it is), run the load generator once."""
        self.wait_quiet()
        try:
            self._server = server = (how or PEERS[peer]).start()
        except Unavailable as reason:
            self.unavailable[peer] = str(reason)
            self.log(f"{peer} skipped: {reason}")
            return {"error": str(reason)}
        except RuntimeError as error:
            return {"error": f"server did not start: {error}"}
        try:
            result = self._loadgen_run(server, scenario, params)
            time.sleep(0.2)
            if not server.alive():
                result["server_alive"] = False
                result["server_exit"] = server.process.returncode
                result["server_log"] = server.log_tail()
            return result
        finally:
            self.stop()

    def measure_nodes(
        self, label: str, scenario: str, params: Params, share: float | None
    ) -> dict[str, Any]:
        """All runs of one scenario over every node configuration: C{config -> summary}."""
        results: dict[str, list[dict[str, Any]]] = {config: [] for config in NODE_CONFIGS}
        for number in range(1, self.runs + 1):
            for config, (count, backplane, changed) in NODE_CONFIGS.items():
                self.log(f"{label} run {number}/{self.runs}: {config}")
                results[config].append(
                    self.one_network_run(count, backplane, share, scenario, params | changed)
                )
        return {
            config: {"status": _status(runs), "median": _median(runs), "runs": runs}
            for config, runs in results.items()
        }

    def one_network_run(
        self, count: int, backplane: bool, share: float | None, scenario: str, params: Params
    ) -> dict[str, Any]:
        """Start the nodes (and their Redis), run the load generator once, stop them."""
        self.wait_quiet()
        try:
            self._server = network = start_network(count, backplane, share)
        except (Unavailable, RuntimeError) as error:
            return {"error": f"the nodes did not start: {error}"}
        try:
            extra = ["--node-pids", ",".join(map(str, network.pids))]
            if network.redis_pid is not None:
                extra += ["--redis-pid", str(network.redis_pid)]
            result = self._run_loadgen(
                "chatroute", network.port, network.pids[0], scenario, params, extra
            )
            time.sleep(0.2)
            publishes = network.publishes()
            if publishes and result.get("cross_delivered"):
                result["publishes"] = publishes
                result["dms_per_publish"] = round(result["cross_delivered"] / publishes, 1)
            if network.budgets:
                result["node_cpu_share"] = share
                result["throttled_s"] = [budget.throttled_s() for budget in network.budgets]
                if share and result.get("elapsed_s") and result.get("node_cpu_s"):
                    # Did every node get its budget? Other work on CPU 0 may have taken it.
                    used = min(result["node_cpu_s"]) / result["elapsed_s"] / share
                    result["budget_used"] = round(used, 2)
            if not network.alive():
                result["server_alive"] = False
                result["server_log"] = network.log_tail()
            return result
        finally:
            self.stop()

    def wait_quiet(self) -> None:
        """
        Wait (at most C{quiet_wait} s) until other processes use less than
        C{QUIET_CPU} of a core, so that they disturb the figures less.
        """
        limit = self.quiet_wait
        deadline = time.monotonic() + limit
        said = False
        while True:
            before = machine_busy_seconds()
            time.sleep(0.5)
            busy = (machine_busy_seconds() - before) / 0.5
            if busy < QUIET_CPU or time.monotonic() > deadline:
                return
            if not said:
                self.log(f"machine busy ({busy:.0%} of a core); waiting up to {limit:.0f} s")
                said = True

    def _loadgen_run(self, server: Running, scenario: str, params: Params) -> dict[str, Any]:
        protocol = PEERS[server.name].protocol
        return self._run_loadgen(protocol, server.port, server.pid, scenario, params, [])

    def _run_loadgen(
        self, protocol: str, port: int, pid: int, scenario: str, params: Params, extra: list[str]
    ) -> dict[str, Any]:
        argv = [
            "taskset",
            "-c",
            str(LOADGEN_CPU),
            str(PYTHON),
            "-m",
            "bench.loadgen",
            "--protocol",
            protocol,
            "--port",
            str(port),
            "--server-pid",
            str(pid),
            "--scenario",
            scenario,
            "--params",
            json.dumps(params),
            *extra,
        ]
        with self.log_path.open("a") as errors:
            self._loadgen = loadgen = subprocess.Popen(
                argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True
            )
            try:
                out, _ = loadgen.communicate(timeout=900)
            except subprocess.TimeoutExpired:
                loadgen.kill()
                loadgen.communicate()
                return {"error": "load generator timed out after 900 s"}
            finally:
                self._loadgen = None
        try:
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {
                "error": f"load generator failed (exit {loadgen.returncode}); see {errors.name}"
            }
        return result

    def stop(self) -> None:
        """Stop whatever this bench started and is still running."""
        if self._loadgen is not None and self._loadgen.poll() is None:
            self._loadgen.kill()
            self._loadgen.wait(5)
        self._loadgen = None
        if self._server is not None:
            self._server.stop()
        self._server = None


def _status(runs: list[dict[str, Any]]) -> str:
    """ "ok", or what went wrong in how many runs."""
    problems = []
    for run in runs:
        if "error" in run:
            problems.append(run["error"])
        elif not run.get("server_alive", True):
            problems.append("server crashed")
        elif run.get("lost_connections"):
            problems.append(f"{run['lost_connections']} connections dropped by the server")
    if not problems:
        return "ok"
    return f"{len(problems)}/{len(runs)} runs: {problems[0]}"


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each numeric figure over the runs; losses are the worst run's, not the median."""
    median: dict[str, Any] = {}
    keys = {key for run in runs for key in run}
    for key in sorted(keys):
        flags = [run[key] for run in runs if isinstance(run.get(key), bool)]
        if flags:
            median[key] = any(flags)  # e.g. victim_dropped: did it happen in any run
            continue
        lists = [run[key] for run in runs if isinstance(run.get(key), list)]
        if lists and all(len(each) == len(lists[0]) for each in lists):
            if all(isinstance(v, int | float) for each in lists for v in each):
                median[key] = [statistics.median(column) for column in zip(*lists, strict=True)]
            continue
        values = [run[key] for run in runs if isinstance(run.get(key), int | float)]
        values = [v for v in values if v == v]  # no NaN
        if not values:
            continue
        if key in ("losses", "lost_connections", "refused", "disorder", "other_cpu_pct"):
            median[key] = max(values)
        else:
            median[key] = statistics.median(values)
    median["server_alive"] = all(run.get("server_alive", False) for run in runs)
    return median


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="shorter timed phases")
    parser.add_argument("--big", action="store_true", help="also 10,000 idle connections")
    parser.add_argument("--scaling", action="store_true", help="measure cost against work size")
    parser.add_argument(
        "--traffic", action="store_true", help="the scenarios of real traffic and their floors"
    )
    parser.add_argument("--only", default="", help="comma-separated scenarios")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated servers")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per figure (median; 3, 5 with --traffic)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help=f"seconds to wait before each run for other processes to go quiet (0: never; "
        f"default {QUIET_WAIT_S:g}, {QUICK_QUIET_WAIT_S:g} with --quick)",
    )
    parser.add_argument(
        "--nodes",
        action="store_true",
        help="chatroute alone: one node against two behind one --reuse-port port",
    )
    parser.add_argument(
        "--node-cpu",
        type=float,
        default=NODE_CPU,
        help="with --nodes: each node's CPU budget in the throughput scenario, of a core (0: none)",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/<time>)")
    args = parser.parse_args()
    unknown = [peer for peer in args.peers.split(",") if peer not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    if args.runs is None:
        args.runs = 5 if args.traffic and not args.quick else 3
    if args.quiet_wait is None:
        args.quiet_wait = QUICK_QUIET_WAIT_S if args.quick else QUIET_WAIT_S
    return args


def _plan(args: argparse.Namespace) -> dict[str, tuple[str, Params]]:
    if args.scaling:
        plan = scaling_params(args.quick)
    else:
        table = QUICK if args.quick else FULL
        if args.traffic:
            names = TRAFFIC
        else:
            names = STANDARD + (["idle-connections-10k"] if args.big else [])
        plan = {name: (SCENARIO_OF.get(name, name), table[name]) for name in names}
    if args.only:
        wanted = args.only.split(",")
        plan = {label: run for label, run in plan.items() if label in wanted or run[0] in wanted}
    return plan


def _setups(args: argparse.Namespace) -> dict[str, Setup]:
    return QUICK_SETUPS if args.quick else SETUPS


def _setup_report(setup: Setup, peers: list[str]) -> dict[str, Any]:
    """How a scenario ran the servers, for the report and the table's notes."""
    return {
        "lifted": list(setup.lifted),
        "tls": setup.tls,
        "variants": {name: list(CHATROUTE_VARIANTS[name]) for name in setup.variants},
        "without_tls": without_tls(peers) if setup.tls else [],
        "peers": list(setup.peers) if setup.peers is not None else None,
        "once": list(setup.once),
    }


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Run the suite; exit status 1 if a chatroute floor failed, 2 if interrupted."""
    args = _parse()
    peers = args.peers.split(",")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    output = args.output or BENCH / "results" / f"{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.runs, output.with_suffix(".log"), args.quiet_wait)
    signal.signal(signal.SIGTERM, _terminate)
    if args.nodes:
        return _nodes_main(args, bench, output, stamp)
    install_missing(peers, bench.log)
    plan = _plan(args)
    commit = _commit()
    started = time.monotonic()
    results: dict[str, Any] = {}
    try:
        for label, (scenario, params) in plan.items():
            setup = _setups(args).get(label, PLAIN)
            servers = servers_for(setup, peers)
            results[label] = bench.measure(label, scenario, params, peers, servers, setup.once)
    except KeyboardInterrupt:
        bench.log("interrupted; stopping servers")
        return 2
    finally:
        bench.stop()
    report = {
        "started": stamp,
        "duration_s": round(time.monotonic() - started, 1),
        "mode": ("traffic " if args.traffic else "")
        + ("scaling" if args.scaling else "quick" if args.quick else "full"),
        "runs": args.runs,
        "machine": _machine(),
        # The code measured: others may change it while the bench runs.
        "commit": commit if commit == _commit() else f"{commit} (then {_commit()})",
        "params": {label: {"scenario": s, **p} for label, (s, p) in plan.items()},
        "setups": {label: _setup_report(_setups(args).get(label, PLAIN), peers) for label in plan},
        "results": results,
    }
    if args.scaling:
        print_scaling(report)
        verdicts: list[dict[str, Any]] = []
    else:
        print_table(report, columns(peers, results))
        verdicts = real_floors(report) if args.traffic else floors(report, big=args.big)
        print_default_costs(report)
    report["floors"] = verdicts
    output.write_text(json.dumps(report, indent=1))
    print(f"\nchatroute at {report['commit']}; results: {_shown(output)}", end="")
    print(f" ({report['duration_s']:.0f} s)")
    return 1 if any(v["verdict"] == "FAIL" for v in verdicts) else 0


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": python_info(),
        "server_cpu": "0",
        "loadgen_cpu": str(LOADGEN_CPU),
    }


def _nodes_main(args: argparse.Namespace, bench: Bench, output: Path, stamp: str) -> int:
    """C{--nodes}: one node against two on one port; exit status 1 if a floor failed."""
    plan = NODES_QUICK if args.quick else NODES_FULL
    if args.only:
        plan = {label: run for label, run in plan.items() if label in args.only.split(",")}
    share: float | None = args.node_cpu or None
    why_not = budget_unavailable() if share is not None else None
    if why_not is not None:
        bench.log(f"no CPU budget per node: {why_not}; the ratio floor is then not judged")
        share = None
    commit = _commit()
    started = time.monotonic()
    results: dict[str, Any] = {}
    try:
        for label, (scenario, params, budgeted) in plan.items():
            results[label] = bench.measure_nodes(
                label, scenario, params, share if budgeted else None
            )
    except KeyboardInterrupt:
        bench.log("interrupted; stopping servers")
        return 2
    finally:
        bench.stop()
    machine = _machine()
    machine["redis_cpu"] = str(LOADGEN_CPU)
    report = {
        "started": stamp,
        "duration_s": round(time.monotonic() - started, 1),
        "mode": "nodes-quick" if args.quick else "nodes",
        "runs": args.runs,
        "machine": machine,
        "node_cpu_share": share,
        "node_cpu_share_unavailable": why_not,
        "commit": commit if commit == _commit() else f"{commit} (then {_commit()})",
        "params": {label: {"scenario": s, "budgeted": b, **p} for label, (s, p, b) in plan.items()},
        "results": results,
    }
    print_nodes(report)
    verdicts = nodes_floors(report)
    report["floors"] = verdicts
    output.write_text(json.dumps(report, indent=1))
    print(f"\nchatroute at {report['commit']}; results: {_shown(output)}", end="")
    print(f" ({report['duration_s']:.0f} s)")
    return 1 if any(v["verdict"] == "FAIL" for v in verdicts) else 0


def _shown(path: Path) -> Path:
    """C{path}, relative to the checkout if it is in it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _commit() -> str:
    """The checked-out commit, plus "+dirty" if the server's code differs from it (read only)."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "diff", "--quiet", "HEAD", "--", "chatroute", "twisted"], check=False
        ).returncode
    except OSError:
        return ""
    return f"{head}+dirty" if dirty else head


if __name__ == "__main__":
    sys.exit(main())
