"""Latency against rate, one line per system (like the paper's Fig. 9): average (solid) and
p99 (dashed); for the SWE batch, makespan per system. Run with the bench environment's
Python (matplotlib): `.venv-bench/bin/python bench/paperbench/plots.py RESULTS.json OUTDIR`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOR = {"nalar": "tab:green", "static": "tab:red", "ayo": "tab:orange", "ray": "tab:blue"}
LABEL = {"nalar": "Nalar", "static": "static sticky FCFS", "ayo": "placement at creation",
         "ray": "Ray Serve"}


def main(path: Path, out: Path) -> None:
    result = json.loads(path.read_text())
    mode = result["meta"]["mode"]
    for name, wr in result["workloads"].items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        if name == "swe":
            systems = list(wr["systems"])
            batches = sorted({s["rate"] for v in wr["systems"].values() for s in v["steps"]})
            width = 0.8 / max(1, len(systems))
            for i, system in enumerate(systems):
                steps = {s["rate"]: s for s in wr["systems"][system]["steps"]}
                xs = [j + i * width for j in range(len(batches))]
                ys = [steps[b]["makespan_s"] if b in steps else math.nan for b in batches]
                ax.bar(xs, ys, width, color=COLOR[system], label=LABEL[system])
            ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(batches))],
                          [f"batch {b:g}" for b in batches])
            ax.set_ylabel("makespan (s)")
        else:
            for system, sr in wr["systems"].items():
                steps = sorted(sr["steps"], key=lambda s: s["rate"])
                xs = [s["rate"] for s in steps]
                ax.plot(xs, [s["latency"]["avg_s"] for s in steps], "-o", color=COLOR[system],
                        label=f"{LABEL[system]} avg")
                ax.plot(xs, [s["latency"]["p99_s"] for s in steps], "--^",
                        color=COLOR[system], alpha=0.7, label=f"{LABEL[system]} p99")
                for s in steps:
                    if not s["sustained"]:
                        ax.annotate("x", (s["rate"], s["latency"]["p99_s"]),
                                    color=COLOR[system], ha="center", va="bottom")
            ax.set_xlabel("rate (runs/s, as scheduled)")
            ax.set_ylabel("latency (s)")
            ax.set_yscale("log")
        ax.set_title(f"{wr['title']} ({mode})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        target = out / f"paper_{mode}_{name}.png"
        fig.savefig(target, dpi=110)
        plt.close(fig)
        print(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
