"""The floors of real traffic, judged from a report's medians."""

from typing import Any

import pytest

from bench.report import IDLE_COUNT, columns, real_floors


def _report(**figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A report whose C{results[label][peer]["median"]} are C{figures}; one run each."""
    results = {
        label.replace("_", "-"): {
            peer: {"status": "ok", "median": median, "runs": [median]}
            for peer, median in by_peer.items()
        }
        for label, by_peer in figures.items()
    }
    return {"results": results, "params": {}, "setups": {}}


def _passing() -> dict[str, Any]:
    return _report(
        dm_trickle={
            "chatroute": {"cpu_ms_per_1000": 10.0},
            "tutorial": {"cpu_ms_per_1000": 11.0},
            "ngircd": {"cpu_ms_per_1000": 7.0},
        },
        dm_throughput={
            "chatroute": {"cpu_ms_per_1000": 1.0},
            "tutorial": {"cpu_ms_per_1000": 2.0},
        },
        room_fanout={
            "chatroute": {"cpu_ms_per_1000": 0.5},
            "miniircd": {"cpu_ms_per_1000": 0.6},
        },
        idle_50k={
            "chatroute": {
                "kib_per_conn": 2.5,
                "connections": IDLE_COUNT,
                "registered": IDLE_COUNT,
                "refused": 0,
                "lost_connections": 0,
                "accept_s": 20.0,
            },
        },
        dm_latency={"chatroute": {"p99_ms": 0.5, "max_ms": 5.0, "losses": 0}},
    )


def _verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {v["floor"]: v["verdict"] for v in real_floors(report)}


def test_all_pass(capsys: pytest.CaptureFixture[str]) -> None:
    verdicts = _verdicts(_passing())
    assert set(verdicts.values()) == {"PASS"}, verdicts
    assert "floors of real traffic" in capsys.readouterr().out


def test_trickle_against_ngircd_allows_half_as_much_again() -> None:
    report = _passing()
    report["results"]["dm-trickle"]["chatroute"]["median"]["cpu_ms_per_1000"] = 10.6
    verdicts = _verdicts(report)
    assert verdicts["dm-trickle CPU <= 1.5 x ngircd"] == "FAIL"
    assert verdicts["dm-trickle CPU <= tutorial"] == "PASS"


def test_fanout_above_miniircd_fails() -> None:
    report = _passing()
    report["results"]["room-fanout"]["chatroute"]["median"]["cpu_ms_per_1000"] = 0.61
    assert _verdicts(report)["room-fanout CPU <= miniircd"] == "FAIL"


@pytest.mark.parametrize(("key", "value"), [("p99_ms", 1.01), ("max_ms", 10.5)])
def test_latency_floors(key: str, value: float) -> None:
    report = _passing()
    report["results"]["dm-latency"]["chatroute"]["median"][key] = value
    failed = [name for name, verdict in _verdicts(report).items() if verdict == "FAIL"]
    assert len(failed) == 1
    assert failed[0].startswith("dm-latency 2,000/s")


def test_idle_memory_floor() -> None:
    report = _passing()
    report["results"]["idle-50k"]["chatroute"]["median"]["kib_per_conn"] = 2.71
    assert _verdicts(report)["idle-50k RSS / connection <= 2.7 KiB"] == "FAIL"


def test_idle_refused_fails() -> None:
    report = _passing()
    report["results"]["idle-50k"]["chatroute"]["median"]["refused"] = 1
    assert _verdicts(report)[f"idle-50k: {IDLE_COUNT:,} held, none refused"] == "FAIL"


def test_idle_capped_by_the_machine_is_not_judged() -> None:
    report = _passing()
    entry = report["results"]["idle-50k"]["chatroute"]
    entry["median"].update(connections=19_900, registered=19_900)
    entry["runs"] = [{**entry["median"], "capped": "19,900 of 50,000: RLIMIT_NOFILE"}]
    verdicts = real_floors(report)
    held = next(v for v in verdicts if v["floor"].endswith("held, none refused"))
    assert held["verdict"] == "N/A"
    assert "RLIMIT_NOFILE" in held["detail"]


def test_losses_of_a_variant_fail() -> None:
    report = _passing()
    report["results"]["dm-trickle"]["chatroute-noidle"] = {
        "status": "ok",
        "median": {"cpu_ms_per_1000": 9.0, "losses": 3},
    }
    assert _verdicts(report)["0 losses in every scenario"] == "FAIL"


def test_missing_scenarios_are_not_applicable() -> None:
    verdicts = _verdicts(_report(dm_trickle={"chatroute": {"cpu_ms_per_1000": 1.0}}))
    assert verdicts["room-fanout CPU <= miniircd"] == "N/A"
    assert verdicts["dm-trickle CPU <= tutorial"] == "N/A"


def test_columns_put_variants_that_ran_after_chatroute() -> None:
    results = {"dm-trickle": {"chatroute": {}, "chatroute-noidle": {}, "ngircd": {}}}
    assert columns(["chatroute", "ngircd"], results) == ["chatroute", "chatroute-noidle", "ngircd"]
    assert columns(["chatroute", "ngircd"], {"x": {"chatroute": {}}}) == ["chatroute", "ngircd"]
