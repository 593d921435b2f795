"""Targets, the markdown table, plots and the section of bench/RESULTS.md."""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from paperbench import stats
from paperbench.systems import BENCH_PY
from paperbench.workloads import Workload

RESULTS_MD = Path(__file__).resolve().parents[1] / "RESULTS.md"
LABEL = {"nalar": "Nalar (policies)", "static": "Static sticky FCFS (control off)",
         "ayo": "Placement at creation (Ayo-like)", "ray": "Ray Serve"}


def _at(steps: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    return next((s for s in steps if s["rate"] == rate), None)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def judge(w: Workload, per: dict[str, Any]) -> None:
    """Mark each rate step sustained or not, against one reference for every system: the
    lowest median at the lowest rate of any system in the run (the work itself, unloaded; a
    system's own would excuse one that queues even at low load)."""
    if w.batch:
        for p in per.values():
            p["max_sustained_rate"] = None
        return
    firsts = [float(p["steps"][0]["latency"]["p50_s"]) for p in per.values() if p["steps"]]
    unloaded = min((x for x in firsts if not math.isnan(x)), default=math.nan)
    for p in per.values():
        for step in p["steps"]:
            step["sustained"], step["why_not"] = stats.sustained(step, unloaded)
        p["max_sustained_rate"] = stats.highest_sustained(p["steps"])


def workload_result(w: Workload, per: dict[str, Any]) -> dict[str, Any]:
    judge(w, per)
    out: dict[str, Any] = {"title": w.title, "time_scale": w.time_scale,
                           "engines": len(w.hosts), **w.windows(), "systems": per}
    out["targets"] = targets(w.name, per)
    return out


def targets(name: str, per: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, as measured ratios (a target needs both systems in the run)."""
    rows: list[dict[str, Any]] = []
    nalar, static, ray = per.get("nalar"), per.get("static"), per.get("ray")
    if nalar is None or static is None:
        return rows
    if name == "fa":
        steps = static["steps"]
        rate = static["max_sustained_rate"] or min(s["rate"] for s in steps)
        n, s = _at(nalar["steps"], rate), _at(steps, rate)
        if n and s:
            p99 = _ratio(n["latency"]["p99_s"], s["latency"]["p99_s"])
            avg = _ratio(n["latency"]["avg_s"], s["latency"]["avg_s"])
            rows.append({"target": f"p99 Nalar/static at {rate:g} runs/s (static's highest "
                         "sustained) <= 0.5", "value": p99, "met": p99 <= 0.5})
            rows.append({"target": f"avg Nalar/static at {rate:g} runs/s <= 1.0",
                         "value": avg, "met": avg <= 1.0})
            r = _at(ray["steps"], rate) if ray else None
            if r:
                v = _ratio(n["latency"]["p99_s"], r["latency"]["p99_s"])
                rows.append({"target": f"p99 Nalar/Ray Serve at {rate:g} runs/s < 1.0",
                             "value": v, "met": v < 1.0})
    elif name == "router":
        a, b = nalar["max_sustained_rate"], static["max_sustained_rate"]
        v = round(a / b, 3) if b else (math.inf if a else math.nan)
        rows.append({"target": "highest sustained rate Nalar/static >= 1.3",
                     "value": v, "met": v >= 1.3, "nalar": a, "static": b})
    elif name == "swe":
        for n in nalar["steps"]:
            s = _at(static["steps"], n["rate"])
            if not s:
                continue
            v = _ratio(s["makespan_s"], n["makespan_s"])
            rows.append({"target": f"makespan static/Nalar, batch {n['rate']:g} >= 1.5",
                         "value": v, "met": v >= 1.5})
            rows.append({"target": f"imbalance CV Nalar < static, batch {n['rate']:g}",
                         "value": [n["imbalance_cv"], s["imbalance_cv"]],
                         "met": n["imbalance_cv"] < s["imbalance_cv"]})
    return rows


def _f(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:g}"


def markdown(result: dict[str, Any], plots: list[str]) -> str:
    meta = result["meta"]
    lines = [f"Command: `{meta['command']}` ({meta['mode']}, {meta['reps']} repetition(s), "
             f"seed {meta['seed']}; {meta['machine']}; {meta['date']}; "
             f"{meta.get('elapsed_s', '?')} s in all).", ""]
    for name, wr in result["workloads"].items():
        batch = name == "swe"
        window = f"a batch submitted at once, {wr['drain_s']:g} s to finish" if batch else \
            (f"warm-up {wr['warmup_s']:g} s, measured {wr['measure_s']:g} s, "
             + (f"cool-down {wr['cooldown_s']:g} s (arrivals go on, not counted), "
                if wr.get("cooldown_s") else "no cool-down, ")
             + f"drain {wr['drain_s']:g} s")
        when = wr.get("measured") or {}
        at = f" Measured {when['date']} at {when['commit']} ({when['elapsed_s']} s)." \
            if when else ""
        lines += [f"#### {wr['title']} ({name})", "",
                  f"{wr['engines']} engines, time scale {wr['time_scale']}; {window}.{at}", ""]
        if batch:
            lines += ["| system | batch | makespan s, median (per rep) | runs ok/all | avg s | "
                      "p99 s | imbalance CV: work, busy |", "|---|---|---|---|---|---|---|"]
        else:
            lines += ["| system | rate/s | offered/s | runs ok/all | failed | unfinished | "
                      "avg s | p50 s | p95 s | p99 s | imbalance CV: work, busy | sustained |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for system, sr in wr["systems"].items():
            for s in sr["steps"]:
                lat = s["latency"]
                cvs = f"{s['imbalance_cv']:g}, {_f(s.get('busy_cv'))}"
                if batch:
                    lines.append(f"| {LABEL[system]} | {s['rate']:g} | {_f(s['makespan_s'])} "
                                 f"({', '.join(_f(x) for x in s['makespan_per_rep_s'])}) | "
                                 f"{s['completed']}/{s['runs']} | {_f(lat['avg_s'])} | "
                                 f"{_f(lat['p99_s'])} | {cvs} |")
                else:
                    ok = "yes" if s["sustained"] else f"no ({s['why_not']})"
                    lines.append(f"| {LABEL[system]} | {s['rate']:g} | "
                                 f"{_f(s.get('offered_rate'))} | {s['completed']}/"
                                 f"{s['runs']} | {s['failed']} | {s['unfinished']} | "
                                 f"{_f(lat['avg_s'])} | {_f(lat['p50_s'])} | "
                                 f"{_f(lat['p95_s'])} | {_f(lat['p99_s'])} | "
                                 f"{cvs} | {ok} |")
        if not batch:
            lines += ["", "Highest sustained rate (runs/s): " + ", ".join(
                f"{LABEL[k]} {_f(v['max_sustained_rate'])}" for k, v in wr["systems"].items())]
        if wr["targets"]:
            lines += ["", "| target | measured | met |", "|---|---|---|"]
            lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |"
                      for t in wr["targets"]]
        lines.append("")
    if plots:
        lines += ["Plots: " + ", ".join(
            f"[{Path(p).name}]({os.path.relpath(Path(p).resolve(), RESULTS_MD.parent)})"
            for p in plots), ""]
    return "\n".join(lines)


def plot(json_path: Path, out_dir: Path) -> list[str]:
    """PNG plots, drawn by matplotlib in the bench environment (`make bench-env`)."""
    if not BENCH_PY.exists():
        print(f"no plots: {BENCH_PY} is missing (make bench-env)")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(BENCH_PY), str(Path(__file__).with_name("plots.py")),
                           str(json_path), str(out_dir)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        print(f"plots failed:\n{done.stderr[-2000:]}")
        return []
    return [line for line in done.stdout.splitlines() if line.endswith(".png")]


def update_results_md(md: str, mode: str) -> None:
    """Replace this mode's section of bench/RESULTS.md (between its markers), or append it."""
    begin, end = f"<!-- paper-bench:{mode}:begin -->", f"<!-- paper-bench:{mode}:end -->"
    title = {"quick": "### Paper workloads, reduced sweep (`make bench`)",
             "full": "### Paper workloads, full sweep (`make bench-full`)"}[mode]
    block = f"{begin}\n{title}\n\n{md}\n{end}"
    text = RESULTS_MD.read_text()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + block + "\n"
    RESULTS_MD.write_text(text)
