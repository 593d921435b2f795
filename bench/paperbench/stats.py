"""Latency summaries, the highest sustained rate, and load imbalance."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def pct(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan without samples."""
    if not samples:
        return math.nan
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def summary(samples: Sequence[float]) -> dict[str, float]:
    if not samples:
        return {k: math.nan for k in ("avg_s", "p50_s", "p95_s", "p99_s", "max_s")}
    return {"avg_s": round(statistics.fmean(samples), 3),
            **{f"p{q}_s": round(pct(samples, q), 3) for q in (50, 95, 99)},
            "max_s": round(max(samples), 3)}


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (population standard deviation over the mean)."""
    if len(values) < 2 or statistics.fmean(values) <= 0:
        return 0.0
    return round(statistics.pstdev(values) / statistics.fmean(values), 3)


def diverging(arrivals_and_latencies: Sequence[tuple[float, float]],
              factor: float = 2.0) -> bool:
    """The queue grows over the window: runs that arrived in its last third took more than
    `factor` times as long (median) as those of its first third."""
    rows = sorted(arrivals_and_latencies)
    if len(rows) < 9:
        return False
    third = len(rows) // 3
    first = statistics.median(lat for _, lat in rows[:third])
    last = statistics.median(lat for _, lat in rows[-third:])
    return last > factor * first


def sustained(step: dict[str, Any], unloaded_p50_s: float, *, max_failed: float = 0.01,
              blowup: float = 4.0) -> tuple[bool, str]:
    """Whether a system sustains a rate step: at most 1% of its runs failed or did not finish
    in the drain window, and latency neither grows over the window nor blows up past
    `blowup` times `unloaded_p50_s` (the best median at the lowest rate)."""
    runs = max(1, int(step["runs"]))
    bad = int(step["failed"]) + int(step["unfinished"])
    if bad / runs > max_failed:
        return False, f"{bad}/{runs} runs failed or unfinished"
    if step["diverging"]:
        return False, "latency grows over the window"
    p50 = float(step["latency"]["p50_s"])
    if math.isnan(p50):
        return False, "no run finished"
    if unloaded_p50_s > 0 and p50 > blowup * unloaded_p50_s:
        return False, f"p50 {p50:.2f} s > {blowup:g}x the unloaded {unloaded_p50_s:.2f} s"
    return True, ""


def highest_sustained(steps: Sequence[dict[str, Any]]) -> float:
    """The highest rate such that it and every lower rate were sustained (0 if none)."""
    best = 0.0
    for step in sorted(steps, key=lambda s: s["rate"]):
        if not step["sustained"]:
            break
        best = float(step["rate"])
    return best
