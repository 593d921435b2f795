"""The paper benchmark's harness (bench/paperbench): schedules, statistics, and one tiny run
of each workload's app on the real stack, so `make bench` does not rot between runs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from paperbench import report, runner, stats
from paperbench.workloads import workloads


def test_fa_schedule_is_poisson_sessions_with_follow_ups_after_their_turn() -> None:
    w = workloads()["fa"]
    w.warmup_s, w.measure_s, w.cooldown_s = 0.0, 400.0, 0.0
    arrivals = w.schedule(4.0, seed=1)
    assert arrivals == w.schedule(4.0, seed=1)  # fixed seed, same schedule
    assert 3.4 < len(arrivals) / 400 < 4.6  # every turn counts towards the rate
    assert all(0 <= a.t < 400 for a in arrivals)
    assert [a.t for a in arrivals] == sorted(a.t for a in arrivals)
    follow = [a for a in arrivals if a.after is not None]
    assert follow and all(arrivals[a.after].session == a.session and
                          arrivals[a.after].t < a.t and
                          arrivals[a.after].input["turn"] + 1 == a.input["turn"]
                          for a in follow)
    # a cool-down: the same arrivals, and more after the window (not counted)
    w.cooldown_s = 20.0
    longer = w.schedule(4.0, seed=1)
    assert [a for a in longer if a.t < 400] == arrivals
    assert 40 < sum(400 <= a.t < 420 for a in longer) < 120 and max(a.t for a in longer) < 420


def test_router_mix_drifts_from_chat_to_code() -> None:
    w = workloads()["router"]
    w.warmup_s, w.measure_s = 10.0, 300.0
    arrivals = w.schedule(10.0, seed=2)

    def code_share(lo: float, hi: float) -> float:
        part = [a for a in arrivals if lo <= a.t < hi]
        return sum(a.input["kind"] == "code" for a in part) / len(part)

    assert code_share(0, 40) < 0.25 and code_share(270, 310) > 0.75
    # it drifts over the first half of the window, then holds
    assert 0.4 < code_share(70, 100) < 0.6 and code_share(160, 310) > 0.8
    assert max(a.t for a in arrivals) > 310 and code_share(310, 320) > 0.75  # cool-down


def test_statistics() -> None:
    assert stats.pct([1, 2, 3, 4], 50) == 2 and math.isnan(stats.pct([], 99))
    assert stats.cv([1.0, 1.0, 1.0]) == 0.0 and stats.cv([1.0, 3.0]) == 0.5
    steady = [(t, 1.0 + (t % 3) * 0.1) for t in range(30)]
    growing = [(t, 1.0 + t) for t in range(30)]
    assert not stats.diverging(steady) and stats.diverging(growing)
    step = {"runs": 100, "failed": 1, "unfinished": 0, "diverging": False,
            "latency": {"p50_s": 2.0}}
    assert stats.sustained(step, 1.0) == (True, "")
    assert not stats.sustained({**step, "failed": 2}, 1.0)[0]  # > 1% failed
    assert not stats.sustained(step, 0.4)[0]  # 5x the unloaded median
    steps = [{"rate": r, "sustained": ok} for r, ok in ((1, True), (2, True), (3, False),
                                                        (4, True))]
    assert stats.highest_sustained(steps) == 2


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["fa", "router", "swe"])
def test_each_workload_runs_on_the_stack(name: str, tmp_path: Path) -> None:
    """A few runs of the workload on the static baseline: all succeed, engines report busy
    time, the step has every figure the report needs, and only the measured window's
    arrivals count (not the warm-up's or the cool-down's)."""
    w = workloads()[name]
    w.time_scale, w.warmup_s, w.measure_s, w.cooldown_s, w.drain_s = 0.05, 1.0, 3.0, 2.0, 30.0
    rate = 3.0 if name == "swe" else 2.0
    result = runner.run_system("static", w, [rate], 1, 3, tmp_path, print)
    report.judge(w, {"static": result})
    step = result["steps"][0]
    assert step["runs"] > 0 and step["completed"] == step["runs"], step["errors"]
    window = [a for a in w.schedule(rate, 3) if w.batch or 1.0 <= a.t < 4.0]
    assert step["runs"] == len(window)
    assert step["busy_cv"] >= 0  # the repetitions merged: both imbalances kept
    assert sum(step["engine_busy_s"].values()) > 0
    assert step["latency"]["p99_s"] >= step["latency"]["p50_s"] > 0
    if name == "swe":
        assert step["makespan_s"] > 0
    else:
        assert step["sustained"] in (True, False) and "offered_rate" in step
