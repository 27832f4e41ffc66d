"""
The bench's table, scaling table and floors, from the report that L{bench.run} builds.

    .venv/bin/python -m bench.report bench/results/<timestamp>.json

prints them again from a saved report, judged by the floors of this checkout.
"""

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.servers import CHATROUTE_RELAXED, CHATROUTE_VARIANTS, PEERS

Report = dict[str, Any]
Figures = dict[str, Any]

Metric = tuple[str, Callable[[Figures], str]]


def _num(key: str, scale: float = 1.0, digits: int = 0) -> Callable[[Figures], str]:
    def show(figures: Figures) -> str:
        value = figures.get(key)
        if value is None:
            return "-"
        return f"{value / scale:,.{digits}f}"

    return show


def _yes(key: str) -> Callable[[Figures], str]:
    return lambda figures: "-" if key not in figures else "yes" if figures[key] else "no"


def _registered(figures: Figures) -> str:
    if "registered" not in figures:
        return "-"
    if not figures.get("server_alive"):
        return f"{figures['registered']:.0f} crashed"
    return f"{figures['registered']:.0f}/{figures['connections']:.0f}"


CPU = ("server CPU ms / 1000", _num("cpu_ms_per_1000", digits=2))
LOSSES = ("losses (worst run)", _num("losses"))
LOADGEN = (
    "loadgen CPU % / other %",
    lambda f: f"{_num('loadgen_cpu_pct')(f)} / {_num('other_cpu_pct')(f)}",
)

METRICS: dict[str, list[Metric]] = {
    "dm-throughput": [
        ("messages / s", _num("msgs_per_s")),
        CPU,
        ("server RSS MiB", _num("rss_kib", 1024, 1)),
        LOSSES,
        LOADGEN,
    ],
    "dm-latency": [
        ("p50 ms", _num("p50_ms", digits=3)),
        ("p99 ms", _num("p99_ms", digits=3)),
        ("max ms", _num("max_ms", digits=3)),
        CPU,
        ("server RSS MiB", _num("rss_kib", 1024, 1)),
        LOSSES,
        LOADGEN,
    ],
    "dm-trickle": [
        ("messages / s", _num("msgs_per_s")),
        CPU,
        ("DMs per client read", _num("dms_per_read", digits=2)),
        (
            "p50 / p99 ms",
            lambda f: f"{_num('p50_ms', digits=2)(f)} / {_num('p99_ms', digits=2)(f)}",
        ),
        ("server RSS MiB", _num("rss_kib", 1024, 1)),
        LOSSES,
        LOADGEN,
    ],
    "room-fanout": [
        ("deliveries / s", _num("deliveries_per_s")),
        CPU,
        ("server RSS MiB", _num("rss_kib", 1024, 1)),
        LOSSES,
        LOADGEN,
    ],
    "idle-connections": [
        ("registered", _registered),
        ("KiB RSS / connection", _num("kib_per_conn", digits=2)),
        ("seconds to accept all", _num("accept_s", digits=2)),
        ("server RSS MiB", _num("rss_after_kib", 1024, 1)),
    ],
    "slow-reader": [
        ("others p50 ms", _num("p50_ms", digits=3)),
        ("others p99 ms", _num("p99_ms", digits=3)),
        ("others max ms", _num("max_ms", digits=3)),
        ("RSS start MiB", _num("rss_start_kib", 1024, 1)),
        ("RSS peak MiB", _num("rss_peak_kib", 1024, 1)),
        ("flood MiB accepted", _num("flood_mib_written", digits=1)),
        ("victim dropped", _yes("victim_dropped")),
        ("others' losses (worst)", _num("losses")),
    ],
}


def _cell(entry: dict[str, Any], show: Callable[[Figures], str]) -> str:
    status = entry.get("status", "")
    if "median" not in entry:
        return status.split()[0].rstrip(":") if status else "-"
    shown = show(entry["median"])
    if shown == "-" and status != "ok":
        return "failed" if entry["median"].get("server_alive") else "crashed"
    return shown


def _print_medians(
    report: Report,
    metrics: dict[str, list[Metric]],
    heads: list[str],
    widths: tuple[int, int, int],
) -> None:
    """
    The table of medians: a block of rows per scenario (its C{metrics}), a
    column per peer or configuration named in C{heads}. C{widths}: of the
    scenario, the figure's name, and each column.
    """
    label_width, name_width, width = widths
    print(
        f"\n{'scenario':<{label_width}}{'figure':<{name_width}}"
        + "".join(f"{c:>{width}}" for c in heads)
    )
    for label, by_column in report["results"].items():
        scenario = report["params"][label]["scenario"]
        print("-" * (label_width + name_width + width * len(heads)))
        for row, (name, show) in enumerate(metrics[scenario]):
            cells = "".join(f"{_cell(by_column.get(c, {}), show):>{width}}" for c in heads)
            print(f"{label if row == 0 else '':<{label_width}}{name:<{name_width}}{cells}")


def print_table(report: Report, peers: list[str]) -> None:
    """Scenario x server table of medians, then notes on failed or partial runs."""
    _print_medians(report, METRICS, peers, (22, 26, 17))  # 17: "chatroute-noidle" and a space
    notes = []
    for label, by_peer in report["results"].items():
        for peer in peers:
            entry = by_peer.get(peer, {})
            status = entry.get("status", "ok")
            if status != "ok":
                notes.append(f"  {label} / {peer}: {status}")
            figures = entry.get("median", {})
            if figures.get("loadgen_cpu_pct", 0) >= 90:
                notes.append(
                    f"  {label} / {peer}: load generator near saturation "
                    f"({figures['loadgen_cpu_pct']:.0f}% of its core); rate is a lower bound"
                )
            if figures.get("other_cpu_pct", 0) >= 25:
                notes.append(
                    f"  {label} / {peer}: other processes used up to "
                    f"{figures['other_cpu_pct']:.0f}% CPU during a run; figures disturbed"
                )
    if "chatroute" in peers:
        notes.append(
            "  chatroute runs with storage on (SQLite) and these limits lifted: "
            + " ".join(CHATROUTE_RELAXED)
        )
        notes += _setup_notes(report)
    if notes:
        print("\nnotes:")
        print("\n".join(notes))


def print_scaling(report: Report) -> None:
    """How CPU per message grows with pairs, and per delivery with room members."""
    results = report["results"]
    peers: list[str] = sorted({peer for by_peer in results.values() for peer in by_peer})
    print(f"\n{'work':<22}{'figure':<26}" + "".join(f"{p:>16}" for p in peers))
    for label, by_peer in results.items():
        for name, show in (CPU, ("throughput / s", _throughput), LOSSES):
            cells = "".join(f"{_cell(by_peer.get(p, {}), show):>16}" for p in peers)
            print(f"{label if name == CPU[0] else '':<22}{name:<26}{cells}")


def _throughput(figures: Figures) -> str:
    return (
        _num("msgs_per_s")(figures)
        if "msgs_per_s" in figures
        else _num("deliveries_per_s")(figures)
    )


def _figure(report: Report, label: str, peer: str, key: str) -> Any:
    entry = report["results"].get(label, {}).get(peer, {})
    return entry.get("median", {}).get(key)


def _judge(verdicts: list[dict[str, Any]], name: str, ok: bool | None, detail: str) -> None:
    """Add the verdict on the floor C{name}: N/A where C{ok} is None (no figures)."""
    verdict = "N/A" if ok is None else "PASS" if ok else "FAIL"
    verdicts.append({"floor": name, "verdict": verdict, "detail": detail})


def _print_verdicts(title: str, verdicts: list[dict[str, Any]], width: int) -> None:
    """The verdicts under C{title}, the floors' names C{width} wide."""
    print(f"\n{title}:")
    for v in verdicts:
        print(f"  {v['verdict']:<5} {v['floor']:<{width}} {v['detail']}")


def floors(report: Report, big: bool) -> list[dict[str, Any]]:
    """Check chatroute against the floors of the issue; print and return the verdicts."""
    verdicts: list[dict[str, Any]] = []
    judge, fig = partial(_judge, verdicts), partial(_figure, report)

    ours, tutorial = (
        fig("dm-throughput", "chatroute", "cpu_ms_per_1000"),
        fig("dm-throughput", "tutorial", "cpu_ms_per_1000"),
    )
    judge(
        "DM CPU <= tutorial",
        None if ours is None or tutorial is None else ours <= tutorial,
        f"chatroute {ours} vs tutorial {tutorial} ms / 1000 DMs",
    )
    ours, mini = (
        fig("room-fanout", "chatroute", "cpu_ms_per_1000"),
        fig("room-fanout", "miniircd", "cpu_ms_per_1000"),
    )
    judge(
        "fan-out CPU <= 1.5x miniircd",
        None if ours is None or mini is None else ours <= 1.5 * mini,
        f"chatroute {ours} vs 1.5 x {mini} ms / 1000 deliveries",
    )
    p99 = fig("dm-latency", "chatroute", "p99_ms")
    judge("p99 at 2,000 DM/s <= 2.5 ms", None if p99 is None else p99 <= 2.5, f"p99 {p99} ms")
    per_conn = fig("idle-connections", "chatroute", "kib_per_conn")
    judge(
        "<= 3 KiB RSS per idle connection (2,000)",
        None if per_conn is None else per_conn <= 3.0,
        f"{per_conn} KiB / connection",
    )
    if big:
        registered = fig("idle-connections-10k", "chatroute", "registered")
        refused = fig("idle-connections-10k", "chatroute", "refused")
        judge(
            "10,000 idle connections, none refused",
            None if registered is None else registered >= 10000 and not refused,
            f"{registered} registered, {refused} refused",
        )
    losses = {label: fig(label, "chatroute", "losses") for label in report["results"]}
    lost = {label: n for label, n in losses.items() if n}
    dropped = {
        label: fig(label, "chatroute", "lost_connections")
        for label in report["results"]
        if fig(label, "chatroute", "lost_connections")
    }
    judge(
        "0 losses in every scenario",
        None if all(n is None for n in losses.values()) else not lost and not dropped,
        f"losses {lost or 0}, dropped connections {dropped or 0}",
    )
    _print_verdicts("floors (chatroute, medians)", verdicts, 42)
    return verdicts


# bench/run --nodes.


def _each(key: str, digits: int = 2) -> Callable[[Figures], str]:
    """A per-node list, as "a / b"."""

    def show(figures: Figures) -> str:
        values = figures.get(key)
        if not isinstance(values, list) or not values:
            return "-"
        return " / ".join(f"{value:,.{digits}f}" for value in values)

    return show


NODES_METRICS: dict[str, list[Metric]] = {
    "nodes-dm-throughput": [
        ("DMs / s (all nodes)", _num("msgs_per_s")),
        ("of them crossing nodes", _num("cross_delivered")),
        ("CPU ms / 1000 DMs, all", _num("cpu_ms_per_1000", digits=2)),
        ("CPU ms / 1000 DMs, per node", _each("node_cpu_ms_per_1000")),
        ("Redis CPU ms / 1000 DMs", _num("redis_cpu_ms_per_1000", digits=2)),
        ("crossing DMs per PUBLISH", _num("dms_per_publish", digits=1)),
        (
            "node CPU s (throttled)",
            lambda f: f"{_each('node_cpu_s')(f)} ({_each('throttled_s', 1)(f)})",
        ),
        ("share of the budget used", _num("budget_used", digits=2)),
        (
            "p99 ms local / crossing",
            lambda f: f"{_num('local_p99_ms', digits=1)(f)} / {_num('cross_p99_ms', digits=1)(f)}",
        ),
        LOSSES,
        LOADGEN,
    ],
    "nodes-dm-latency": [
        (
            "p50 ms local / crossing",
            lambda f: f"{_num('local_p50_ms', digits=3)(f)} / {_num('cross_p50_ms', digits=3)(f)}",
        ),
        (
            "p99 ms local / crossing",
            lambda f: f"{_num('local_p99_ms', digits=3)(f)} / {_num('cross_p99_ms', digits=3)(f)}",
        ),
        (
            "max ms local / crossing",
            lambda f: f"{_num('local_max_ms', digits=1)(f)} / {_num('cross_max_ms', digits=1)(f)}",
        ),
        ("CPU ms / 1000 DMs, per node", _each("node_cpu_ms_per_1000")),
        ("Redis CPU ms / 1000 DMs", _num("redis_cpu_ms_per_1000", digits=2)),
        ("crossing DMs per PUBLISH", _num("dms_per_publish", digits=1)),
        LOSSES,
        LOADGEN,
    ],
}


def print_nodes(report: Report) -> None:
    """Scenario x configuration table of medians, then notes."""
    configs: list[str] = []
    for by_config in report["results"].values():
        configs += [config for config in by_config if config not in configs]
    _print_medians(report, NODES_METRICS, configs, (18, 29, 21))
    notes = []
    for label, by_config in report["results"].items():
        for config in configs:
            entry = by_config.get(config, {})
            if entry.get("status", "ok") != "ok":
                notes.append(f"  {label} / {config}: {entry['status']}")
            figures = entry.get("median", {})
            if figures.get("other_cpu_pct", 0) >= 25:
                notes.append(
                    f"  {label} / {config}: other processes used up to "
                    f"{figures['other_cpu_pct']:.0f}% CPU during a run; figures disturbed"
                )
    share = report.get("node_cpu_share")
    notes.append(
        "  plain: one node, no backplane; 1 node / 2 nodes: --reuse-port --redis on a private "
        "Redis; nodes on CPU 0, Redis and the load generator on CPU 1; 2 nodes, none cross: "
        "the control, every DM between users of one node"
    )
    if share:
        notes.append(
            f"  nodes-throughput: each node capped at {share:.0%} of a core (cgroup CPU quota), "
            "so that 2 nodes get twice the CPU of 1 and the load generator a core of its own"
        )
    else:
        why = report.get("node_cpu_share_unavailable") or "--node-cpu 0"
        notes.append(f"  nodes-throughput: no CPU budget per node ({why})")
    print("\nnotes:")
    print("\n".join(notes))


BUDGET_USED = 0.9
"""A run counts for the ratio only if every node used this much of its CPU budget."""


def _budgeted_runs(report: Report, config: str) -> tuple[list[Figures], int]:
    """The throughput runs of C{config} in which every node got its budget, and all its runs."""
    runs = report["results"].get("nodes-throughput", {}).get(config, {}).get("runs", [])
    kept = [run for run in runs if run.get("budget_used", 0) >= BUDGET_USED]
    return kept, len(runs)


def _median_of(runs: tuple[list[Figures], int], key: str) -> float | None:
    values = sorted(run[key] for run in runs[0] if isinstance(run.get(key), int | float))
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def nodes_floors(report: Report) -> list[dict[str, Any]]:
    """Check the several-nodes floors of the issue; print and return the verdicts."""
    verdicts: list[dict[str, Any]] = []
    judge, fig = partial(_judge, verdicts), partial(_figure, report)

    # Only runs in which every node got its CPU budget compare like with like.
    budgeted = {c: _budgeted_runs(report, c) for c in ("1 node", "2 nodes")}
    one, two = (_median_of(runs, "msgs_per_s") for runs in budgeted.values())
    ratio = None if not one or two is None else two / one
    cost_one = fig("nodes-throughput", "1 node", "cpu_ms_per_1000")
    cost_two = fig("nodes-throughput", "2 nodes", "cpu_ms_per_1000")
    capacity = (
        f"; from CPU per DM: x {2 * cost_one / cost_two:.2f}" if cost_one and cost_two else ""
    )
    counts = " / ".join(f"{len(budgeted[c][0])} of {budgeted[c][1]}" for c in budgeted)
    if not report.get("node_cpu_share"):
        judged, detail = None, "no CPU budget per node"
    elif ratio is None:
        judged, detail = None, f"no run in which every node got its budget ({counts}){capacity}"
    else:
        judged = ratio >= 1.6
        detail = f"{two:,.0f} vs {one:,.0f} DMs / s: x {ratio:.2f} ({counts} runs){capacity}"
    judge("2 nodes deliver >= 1.6 x 1 node's DMs / s", judged, detail)
    p99 = fig("nodes-latency", "2 nodes", "cross_p99_ms")
    judge(
        "p99 of crossing DMs at 2,000 DM/s <= 2 ms",
        None if p99 is None else p99 <= 2.0,
        f"p99 {p99} ms",
    )
    plain, single = (fig("nodes-throughput", c, "cpu_ms_per_1000") for c in ("plain", "1 node"))
    judge(
        "a node's local DMs cost no more with the backplane (+10%)",
        None if plain is None or single is None else single <= plain * 1.1,
        f"1 node {single} vs plain {plain} ms / 1000 DMs",
    )
    losses = {
        f"{label} / {config}": fig(label, config, "losses")
        for label, by_config in report["results"].items()
        for config in by_config
    }
    lost = {where: n for where, n in losses.items() if n}
    judge(
        "0 losses",
        None if all(n is None for n in losses.values()) else not lost,
        f"losses {lost or 0}",
    )
    _print_verdicts("floors (chatroute nodes, medians)", verdicts, 58)
    return verdicts


def _setup_notes(report: Report) -> list[str]:
    """What the scenarios' setups changed: limits lifted, TLS, variants run beside chatroute."""
    notes = ["  every other limit of chatroute stays at its default (the idle timeout on)"]
    variants: dict[str, list[str]] = {}
    for label, setup in report.get("setups", {}).items():
        if setup["lifted"]:
            notes.append(f"  {label}: chatroute also with {' '.join(setup['lifted'])}")
        if setup["tls"]:
            left_out = ", ".join(setup["without_tls"]) or "none"
            notes.append(
                f"  {label}: every server over TLS (peers without TLS left out: {left_out})"
            )
        for name, options in setup["variants"].items():
            variants.setdefault(f"{name} = chatroute {' '.join(options)}", []).append(label)
    for variant, labels in variants.items():
        notes.append(f"  {variant} ({', '.join(labels)}): what that default costs")
    for label, by_peer in report["results"].items():
        for peer, entry in by_peer.items():
            capped = _capped(entry)
            if capped:
                notes.append(f"  {label} / {peer}: {capped}")
    return notes


def _capped(entry: dict[str, Any]) -> str | None:
    """Why a run opened fewer connections than asked, if it did."""
    return next((run["capped"] for run in entry.get("runs", []) if run.get("capped")), None)


# The batch scenarios must get no worse than they were when the floors of real
# traffic were set: chatroute's CPU per message as a ratio to a peer's in the
# same run, as measured then (bench/run --traffic at 9cb5b0d, medians of 5;
# docs/performance.md, "Real traffic"), with a margin for the noise between runs.
BATCH_BASELINE: dict[str, tuple[str, float]] = {
    "dm-throughput": ("tutorial", 1.20),
    "room-fanout": ("miniircd", 1.29),
}
BASELINE_MARGIN = 1.10

LATENCY_P99_MS = 1.0
LATENCY_MAX_MS = 10.0
IDLE_KIB = 2.7  # ngircd's, measured when the floor was set
IDLE_COUNT = 50_000


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or not theirs else round(ours / theirs, 2)


def real_floors(report: Report) -> list[dict[str, Any]]:
    """
    Check chatroute against the floors of real traffic (issue 12): medians of
    the interleaved runs, every ratio between figures of this same run.
    """
    verdicts: list[dict[str, Any]] = []
    judge, fig = partial(_judge, verdicts), partial(_figure, report)

    ours = fig("dm-trickle", "chatroute", "cpu_ms_per_1000")
    for peer, factor in (("tutorial", 1.0), ("ngircd", 1.5)):
        theirs = fig("dm-trickle", peer, "cpu_ms_per_1000")
        times = "" if factor == 1.0 else f"{factor:g} x "
        judge(
            f"dm-trickle CPU <= {times}{peer}",
            None if ours is None or theirs is None else ours <= factor * theirs,
            f"chatroute {ours} vs {times}{theirs} ms / 1000 DMs ({_ratio(ours, theirs)} x)",
        )
    for label, (peer, baseline) in BATCH_BASELINE.items():
        ours, theirs = (
            fig(label, "chatroute", "cpu_ms_per_1000"),
            fig(label, peer, "cpu_ms_per_1000"),
        )
        ratio = _ratio(ours, theirs)
        judge(
            f"{label} no worse than today (vs {peer})",
            None if ratio is None else ratio <= baseline * BASELINE_MARGIN,
            f"{ratio} x {peer} ({ours} vs {theirs} ms); today {baseline} x, "
            f"+{BASELINE_MARGIN - 1:.0%} for noise",
        )
    ours, mini = (
        fig("room-fanout", "chatroute", "cpu_ms_per_1000"),
        fig("room-fanout", "miniircd", "cpu_ms_per_1000"),
    )
    judge(
        "room-fanout CPU <= miniircd",
        None if ours is None or mini is None else ours <= mini,
        f"chatroute {ours} vs {mini} ms / 1000 deliveries ({_ratio(ours, mini)} x)",
    )
    per_conn = fig("idle-50k", "chatroute", "kib_per_conn")
    count = fig("idle-50k", "chatroute", "connections")
    ngircd = fig("idle-50k", "ngircd", "kib_per_conn")
    judge(
        f"idle-50k RSS / connection <= {IDLE_KIB} KiB",
        None if per_conn is None else per_conn <= IDLE_KIB,
        f"chatroute {per_conn} KiB at {count or 0:,.0f} connections "
        f"(ngircd {ngircd} KiB in this run)",
    )
    registered = fig("idle-50k", "chatroute", "registered")
    refused = fig("idle-50k", "chatroute", "refused")
    dropped = fig("idle-50k", "chatroute", "lost_connections")
    capped = _capped(report["results"].get("idle-50k", {}).get("chatroute", {}))
    held = f"{registered} registered, {refused} refused, {dropped} dropped (worst run)"
    judge(
        f"idle-50k: {IDLE_COUNT:,} held, none refused",
        None
        if registered is None or capped
        else registered >= IDLE_COUNT and not refused and not dropped,
        f"not measurable here: {capped}; {held}"
        if capped
        else f"{held}, in {fig('idle-50k', 'chatroute', 'accept_s')} s",
    )
    p99, worst = fig("dm-latency", "chatroute", "p99_ms"), fig("dm-latency", "chatroute", "max_ms")
    judge(
        f"dm-latency 2,000/s: p99 <= {LATENCY_P99_MS:g} ms",
        None if p99 is None else p99 <= LATENCY_P99_MS,
        f"p99 {p99} ms",
    )
    judge(
        f"dm-latency 2,000/s: max <= {LATENCY_MAX_MS:g} ms",
        None if worst is None else worst <= LATENCY_MAX_MS,
        f"max {worst} ms (median of the runs' maxima)",
    )
    columns = ["chatroute", *CHATROUTE_VARIANTS]
    lost = {
        f"{label} / {peer} {key}": n
        for label in report["results"]
        for peer in columns
        for key in ("losses", "lost_connections")
        if (n := fig(label, peer, key))
    }
    judge(
        "0 losses in every scenario",
        None if not report["results"] else not lost,
        f"losses and dropped connections: {lost or 0}",
    )
    title = "floors of real traffic (chatroute at its defaults, medians, ratios from this run)"
    _print_verdicts(title, verdicts, 50)
    return verdicts


# The figure that says what a default costs, per scenario.
_COST_FIGURE = {
    "dm-trickle": ("cpu_ms_per_1000", "ms CPU / 1000 DMs"),
    "dm-throughput": ("cpu_ms_per_1000", "ms CPU / 1000 DMs"),
    "dm-latency": ("cpu_ms_per_1000", "ms CPU / 1000 DMs"),
    "room-fanout": ("cpu_ms_per_1000", "ms CPU / 1000 deliveries"),
    "idle-connections": ("kib_per_conn", "KiB / idle connection"),
}


def print_default_costs(report: Report) -> None:
    """What each default measured on its own costs: chatroute against the variant without it."""
    lines = []
    for label, setup in report.get("setups", {}).items():
        scenario = report["params"][label]["scenario"]
        key, unit = _COST_FIGURE.get(scenario, ("cpu_ms_per_1000", "ms CPU / 1000"))
        with_it = _figure(report, label, "chatroute", key)
        for name, options in setup["variants"].items():
            without = _figure(report, label, name, key)
            if with_it is None or without is None:
                lines.append(f"  {label}: {' '.join(options)}: no figures")
                continue
            share = f" ({(with_it - without) / without:+.0%})" if without else ""
            lines.append(
                f"  {label}: chatroute {with_it} vs {without} with {' '.join(options)}: "
                f"the default costs {with_it - without:+.2f} {unit}{share}"
            )
    if lines:
        print("\ndefaults measured separately (medians of this run):")
        print("\n".join(lines))


def columns(peers: list[str], results: dict[str, Any]) -> list[str]:
    """The table's columns: the peers, and the chatroute variants that ran right after it."""
    ran = [name for name in CHATROUTE_VARIANTS if any(name in by for by in results.values())]
    if "chatroute" not in peers or not ran:
        return peers
    at = peers.index("chatroute") + 1
    return [*peers[:at], *ran, *peers[at:]]


def main(path: str) -> int:
    """Print the table, floors and costs of a saved report; 1 if a floor fails."""
    report: Report = json.loads(Path(path).read_text())
    if report["mode"].startswith("nodes"):
        print_nodes(report)
        return 1 if any(v["verdict"] == "FAIL" for v in nodes_floors(report)) else 0
    results = report["results"]
    peers = [peer for peer in PEERS if any(peer in by for by in results.values())]
    if report["mode"].endswith("scaling"):
        print_scaling(report)
        return 0
    print_table(report, columns(peers, results))
    if report["mode"].startswith("traffic"):
        verdicts = real_floors(report)
    else:
        verdicts = floors(report, big="idle-connections-10k" in results)
    print_default_costs(report)
    return 1 if any(v["verdict"] == "FAIL" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
