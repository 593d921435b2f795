"""The paper's evaluation at this machine's scale (issue 7): three workloads (financial
analyst, router, recursive SWE) on four systems side by side in one run (Nalar with its
policies; Nalar with control off: static sticky FCFS; placement fixed at creation: Ayo-like;
Ray Serve), open-loop Poisson load over HTTP, with the simulated engine standing in for GPUs.

    make bench         # reduced sweep, < 10 min: bench/results/paper_quick.json
    make bench-full    # every rate, 3 repetitions: bench/results/paper_full.json
    .venv/bin/python bench/paper.py --mode full --resume   # go on with an interrupted one
    .venv/bin/python bench/paper.py --workloads fa --systems nalar,static --rates 2,4 --reps 1

Writes the JSON, PNG plots (bench/results/plots/) and a section of bench/RESULTS.md.
Parameters next to the paper's: bench/PAPER.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paperbench import report, runner, systems
from paperbench.workloads import workloads

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("quick", "full"), default="quick")
    ap.add_argument("--workloads", default="fa,router,swe")
    ap.add_argument("--systems", default=",".join(systems.SYSTEMS))
    ap.add_argument("--all-systems", action="store_true",
                    help="quick mode: every system on every workload (by default each "
                    "workload runs the systems its targets compare, to stay under 10 min)")
    ap.add_argument("--rates", default="", help="override the rates (batch sizes for swe)")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 1 quick, 3 full)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--measure-s", type=float, default=0.0, help="override the window")
    ap.add_argument("--out", default="", help="JSON path (default results/paper_<mode>.json)")
    ap.add_argument("--no-results-md", action="store_true")
    ap.add_argument("--resume", action="store_true",
                    help="keep the workloads the JSON has already (same mode, repetitions, "
                    "seed and windows) and run only the others: a long sweep in parts")
    args = ap.parse_args()
    reps = args.reps or (1 if args.mode == "quick" else 3)
    chosen = [workloads()[n] for n in args.workloads.split(",") if n]
    names = [s for s in args.systems.split(",") if s]
    unknown = set(names) - set(systems.SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}; known: {systems.SYSTEMS}")
    command = "python bench/paper.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = time.time()
    meta: dict[str, object] = {
        "command": command.strip(), "mode": args.mode, "reps": reps, "seed": args.seed,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started))}
    out = Path(args.out) if args.out else OUT / f"paper_{args.mode}.json"
    done = _resumable(out, meta) if args.resume else {}
    stored: dict[str, object] = dict(done)
    result: dict[str, object] = {"meta": meta, "workloads": stored}
    for w in chosen:
        if args.mode == "quick" and not w.batch:
            w.warmup_s, w.measure_s, w.cooldown_s, w.drain_s = w.quick_windows
        if args.measure_s:
            w.measure_s = args.measure_s
            if args.mode == "quick":
                w.warmup_s = min(w.warmup_s, args.measure_s / 4)
        if w.name in done:
            kept = done[w.name]
            if all(kept.get(k) == v for k, v in w.windows().items()):
                print(f"{w.name}: kept from {out} (measured {kept.get('measured')})",
                      flush=True)
                continue
            print(f"{w.name}: {out} has it measured with other windows "
                  f"({ {k: kept.get(k) for k in w.windows()} }): measuring it again",
                  flush=True)
            del stored[w.name]
        rates = [float(x) for x in args.rates.split(",")] if args.rates else \
            (w.quick_rates if args.mode == "quick" else w.rates)
        per: dict[str, object] = {}
        time_of: dict[str, float] = {}
        for system in names:
            if args.mode == "quick" and not args.all_systems and system not in w.quick_systems:
                continue
            t0 = time.monotonic()
            print(f"{w.name} on {system}: rates {rates}", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"paper-{w.name}-{system}-") as tmp:
                per[system] = runner.run_system(system, w, rates, reps, args.seed, Path(tmp),
                                                lambda line: print(line, flush=True))
            time_of[system] = time.monotonic() - t0
            print(f"  ({time_of[system]:.0f} s)", flush=True)
        measured = {**report.workload_result(w, per), "measured": {
            "date": time.strftime("%Y-%m-%d %H:%M"), "commit": _commit(),
            "elapsed_s": round(sum(time_of.values()))}}
        stored[w.name] = measured
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str))  # after every workload
    meta["elapsed_s"] = _elapsed(result, started)
    out.write_text(json.dumps(result, indent=1, default=str))
    plots = report.plot(out, out.parent / "plots")  # beside the JSON (--out: not the repo's)
    md = report.markdown(result, plots)
    print(md)
    if not args.no_results_md:
        report.update_results_md(md, args.mode)


def _resumable(out: Path, meta: dict[str, object]) -> dict[str, dict[str, object]]:
    """The workloads an earlier run of the same sweep stored in `out`."""
    if not out.exists():
        return {}
    prev = json.loads(out.read_text())
    same = all(prev.get("meta", {}).get(k) == meta[k] for k in ("mode", "reps", "seed"))
    if not same:
        sys.exit(f"{out} holds another sweep ({prev.get('meta')}): not resuming it")
    return dict(prev.get("workloads") or {})


def _elapsed(result: dict[str, Any], started: float) -> int:
    """Seconds the sweep took: its workloads' own, summed over the parts it was run in."""
    parts = [int((wr.get("measured") or {}).get("elapsed_s") or 0)
             for wr in result["workloads"].values()]
    return sum(parts) or round(time.time() - started)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=OUT.parent).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
