"""One workload on one system: every rate (or batch) step, repeated, on one stack."""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
from pathlib import Path
from typing import Any

from paperbench import loadgen, stats, systems
from paperbench.loadgen import Record
from paperbench.workloads import Workload


def _delta(before: list[dict[str, Any]], after: list[dict[str, Any]],
           key: str) -> dict[str, float]:
    start = {e["id"]: float(e.get(key, 0.0)) for e in before}
    return {e["id"]: round(float(e.get(key, 0.0)) - start.get(e["id"], 0.0), 3)
            for e in after}


def _step(w: Workload, rate: float, rep: int, records: list[Record],
          snaps: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A step's figures; the imbalance is the coefficient of variation of the engines'
    sequence-seconds over the window (their work: with continuous batching a loaded engine
    is busy nearly all the time, so plain busy time hardly tells engines apart); that of
    their busy time (wall time with a sequence running) is kept beside it."""
    work = _delta(snaps["start"], snaps["end"], "seq_s")
    busy = _delta(snaps["start"], snaps["end"], "busy_s")
    measured = [r for r in records if r.measured]
    ok = [r for r in measured if r.status == "succeeded"]
    errors: dict[str, int] = {}
    for r in measured:
        if r.status != "succeeded":
            key = f"{r.status}: {r.error[:100]}"
            errors[key] = errors.get(key, 0) + 1
    step: dict[str, Any] = {
        "rate": rate, "rep": rep, "runs": len(measured), "completed": len(ok),
        "offered_rate": round(len(measured) / w.measure_s, 3) if not w.batch else None,
        "failed": sum(1 for r in measured if r.status not in ("succeeded", "unfinished")),
        "unfinished": sum(1 for r in measured if r.status == "unfinished"),
        "errors": errors, "latency": stats.summary([r.latency_s for r in ok]),
        "latencies": [round(r.latency_s, 3) for r in ok],
        "diverging": stats.diverging([(r.arrival.t, r.latency_s) for r in ok]),
        "engine_busy_s": busy,
        "engine_seq_s": work,
        "engine_pool": {e["id"]: str(e.get("pool", "")) for e in snaps["end"]},
        "imbalance_cv": stats.cv(list(work.values())),
        "busy_cv": stats.cv(list(busy.values())),
    }
    if w.batch and ok:
        ends = [r.due + r.latency_s for r in ok]
        step["makespan_s"] = round(max(ends) - min(r.due for r in measured), 3) \
            if len(ok) == len(measured) else math.nan
    return step


async def _run_step(w: Workload, running: systems.Running, rate: float, seed: int,
                    rep: int) -> dict[str, Any]:
    arrivals = w.schedule(rate, seed)
    snaps: dict[str, list[dict[str, Any]]] = {}

    async def on_window(edge: str) -> None:
        snaps[edge] = await asyncio.to_thread(running.engines)

    measure = (0.0, math.inf) if w.batch else (w.warmup_s, w.warmup_s + w.measure_s)
    if w.batch:
        await on_window("start")
        records = await loadgen.drive(running.url, arrivals, measure=(0.0, math.inf),
                                      drain_s=w.drain_s, on_window=_nothing)
        await on_window("end")
    else:
        records = await loadgen.drive(running.url, arrivals, measure=measure,
                                      drain_s=w.drain_s, on_window=on_window)
    return _step(w, rate, rep, records, snaps)


async def _nothing(edge: str) -> None:
    return None


def merge(w: Workload, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """A rate's repetitions pooled: latencies together, failures summed, the imbalance
    and the makespan the median of the repetitions', the per-repetition p99 and makespan
    kept for their spread."""
    lat = [x for s in reps for x in s["latencies"]]
    out: dict[str, Any] = {
        "rate": reps[0]["rate"], "reps": len(reps),
        "offered_rate": None if w.batch else round(statistics.fmean(
            s["offered_rate"] for s in reps), 3),
        **{k: sum(int(s[k]) for s in reps) for k in ("runs", "completed", "failed",
                                                     "unfinished")},
        "latency": stats.summary(lat),
        "p99_per_rep_s": [s["latency"]["p99_s"] for s in reps],
        "diverging": sum(bool(s["diverging"]) for s in reps) * 2 > len(reps),
        "imbalance_cv": round(statistics.median(s["imbalance_cv"] for s in reps), 3),
        "busy_cv": round(statistics.median(s["busy_cv"] for s in reps), 3),
        "errors": {k: sum(s["errors"].get(k, 0) for s in reps)
                   for k in {k for s in reps for k in s["errors"]}},
        **{k: reps[-1][k] for k in ("engine_busy_s", "engine_seq_s", "engine_pool")},
    }
    if w.batch:
        spans = [float(s.get("makespan_s", math.nan)) for s in reps]
        out["makespan_per_rep_s"] = spans
        out["makespan_s"] = round(statistics.median(spans), 3)
    return out


def run_system(system: str, w: Workload, rates: list[float], reps: int, seed: int,
               tmp: Path, log: Any) -> dict[str, Any]:
    """Every step on one stack, except where the system changes its pools under load (Nalar
    with the Rebalancer): then each step starts a fresh stack, so each starts from the same
    pools as the other systems."""
    steps: list[dict[str, Any]] = []
    fresh = system == "nalar" and w.rebalance is not None
    with contextlib.ExitStack() as stack:
        running = None
        for rate in rates:
            done = []
            for rep in range(reps):
                if running is None or fresh:
                    stack.close()
                    where = tmp / f"r{rate:g}-{rep}" if fresh else tmp
                    where.mkdir(exist_ok=True)
                    running = stack.enter_context(systems.started(system, w, where, seed))
                step = asyncio.run(_run_step(w, running, rate, seed + 1000 * rep, rep))
                done.append(step)
                log(f"  {w.name} {system} rate={rate:g} rep={rep}: "
                    f"offered={step['offered_rate']} runs={step['runs']} "
                    f"ok={step['completed']} failed={step['failed']} "
                    f"unfinished={step['unfinished']} p50={step['latency']['p50_s']} "
                    f"p99={step['latency']['p99_s']} cv={step['imbalance_cv']}"
                    + (f" makespan={step.get('makespan_s')}" if w.batch else ""))
                if not fresh:
                    asyncio.run(_until_idle(running))
            steps.append(merge(w, done))
    return {"steps": steps}


async def _until_idle(running: systems.Running) -> None:
    await loadgen.until_idle(lambda: asyncio.to_thread(_total_busy, running))


def _total_busy(running: systems.Running) -> float:
    return round(sum(float(e["busy_s"]) for e in running.engines()), 2)
