"""What the durable tool-calling loop costs per turn (issue 20): `nalar.AgentLoop` on the
stack against the same loop written as a plain Python loop calling the same simulated engine
in-process.

    .venv/bin/python bench/agentloop.py [--turns 5] [--runs 8] [--turn-ms 200]

Both loops see the same conversation: the engine is scripted (`NALAR_LLM_SIM_PARAMS`) to
propose one `echo` tool call per turn, arguments long enough that each turn decodes about
`--turn-ms` of tokens, then to answer. One node, one agent host (the LLM turns, the tool calls
and the driver all on it), runs one after another over HTTP (`?wait=`). Prints the median wall
time per run of each, the extra time per turn and its ratio to the engine time, and the CPU
per turn of every process. Figures only, nothing asserted; writes bench/out/agentloop.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from nalar.engines import LLMRequest, SimulatedEngine
from nalar.toolspec import tool_spec
from nalar_common import eventloop
from stack import CpuMeter, started_stack, wait_ready

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "bench" / "apps" / "agentloop"
OUT = ROOT / "bench" / "out"
TPOT_S = 0.012  # the simulated engine's time per output token at batch 1
sys.path.insert(0, str(APP))
from workflows.loop import echo  # noqa: E402


def engine_params(turns: int, turn_ms: float) -> dict[str, Any]:
    """A script: `turns` echo calls, then an answer, each about `turn_ms` of decoding."""
    words = max(1, round(turn_ms / 1e3 / (TPOT_S + 0.00025)) - 2)
    text = " ".join(f"w{i}" for i in range(words))
    step = {"tool_calls": [{"name": "echo", "arguments": {"text": text}}]}
    return {"script": {"bench": [step] * turns + [{"text": text}]},
            "prefill_tokens_per_s": 1e9, "tpot_s": TPOT_S}


async def direct(params: dict[str, Any], question: str) -> tuple[float, int]:
    """The same loop by hand: engine, tool, engine... in this process."""
    engine = SimulatedEngine(time_scale=1.0, **params)
    tools = [tool_spec(echo).schema()]
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    started, turns = time.perf_counter(), 0
    while True:
        turns += 1
        c = await engine.complete(LLMRequest(messages=messages, tools=tools,
                                             tool_choice="auto", max_tokens=64))
        msg: dict[str, Any] = {"role": "assistant", "content": c.text or None}
        if not c.tool_calls:
            messages.append(msg)
            break
        msg["tool_calls"] = [{"id": t.id, "type": "function",
                              "function": {"name": t.name, "arguments": t.arguments}}
                             for t in c.tool_calls]
        messages.append(msg)
        for t in c.tool_calls:
            out = echo(**tool_spec(echo).check(t.arguments))
            messages.append({"role": "tool", "tool_call_id": t.id, "content": out})
    await engine.aclose()
    return time.perf_counter() - started, turns


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=5, help="tool-calling turns before the answer")
    p.add_argument("--runs", type=int, default=8, help="runs of each loop (after one warm-up)")
    p.add_argument("--turn-ms", type=float, default=200.0, help="engine time per turn")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    params = engine_params(args.turns, args.turn_ms)
    env = {"NALAR_LLM_SIM_PARAMS": json.dumps(params), "NALAR_LLM_TIME_SCALE": "1"}
    result: dict[str, Any] = {"turns": args.turns + 1, "runs": args.runs,
                              "turn_ms": args.turn_ms}
    direct_s = []
    for i in range(args.runs + 1):
        # on the loop the host's engine runs on (uvloop): the engine's token timer is a sleep
        took, turns = eventloop.run(direct(params, f"bench {i}"))
        if i:
            direct_s.append(took)
    assert turns == args.turns + 1, turns
    with started_stack(APP, nodes=1, hosts_per_node=1, log_level="WARNING", env=env) as stack:
        asyncio.run(wait_ready(stack, nodes=1))
        meter = CpuMeter(stack.pids)
        nalar_s = []
        with httpx.Client(base_url=stack.url, timeout=120) as http:
            for i in range(args.runs + 1):
                t0 = time.perf_counter()
                with meter.measure("loop" if i else "warm-up"):
                    r = http.post("/v1/workflows/bench_loop/runs", params={"wait": 60},
                                  json={"input": {"input": f"bench {i}"}})
                took = time.perf_counter() - t0
                body = r.json()
                if r.status_code != 200 or body.get("status") != "succeeded":
                    raise RuntimeError(f"run failed: {r.status_code} {r.text[:500]}")
                if i:
                    nalar_s.append(took)
            steps = [f for f in http.get(f"/v1/runs/{body['run_id']}/futures").json()["futures"]
                     if f["future"] != "0"]
        turns = args.turns + 1
        engine_s = [sum(float(u.get("total_s", 0)) for u in (f.get("usage") or {}).get("llm", []))
                    for f in steps if f["agent"] == "llm"]
        result.update(
            direct_run_ms=round(statistics.median(direct_s) * 1e3, 1),
            nalar_run_ms=round(statistics.median(nalar_s) * 1e3, 1),
            engine_per_turn_ms=round(statistics.median(engine_s) * 1e3, 1),
            futures_per_run=len(steps) + 1,
            cpu_us_per_turn=meter.per_op_us("loop", args.runs * turns),
            other_cores=meter.other_cores())
        extra = (result["nalar_run_ms"] - result["direct_run_ms"]) / turns
        result["extra_per_turn_ms"] = round(extra, 2)
        result["extra_ratio"] = round(extra / (result["direct_run_ms"] / turns), 4)
    report(result)
    OUT.mkdir(exist_ok=True)
    (OUT / "agentloop.json").write_text(json.dumps(result, indent=2))
    return 0


def report(r: dict[str, Any]) -> None:
    print(f"\nNalar agent loop per turn  ({os.cpu_count()} cores, {platform.python_version()})")
    print(f"command: .venv/bin/python bench/agentloop.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"{r['turns']} turns per run ({r['turns'] - 1} with a tool call), {r['runs']} runs each"
          f", {r['futures_per_run']} futures per Nalar run")
    print(f"plain Python loop, engine in-process: {r['direct_run_ms']:.1f} ms per run (median)")
    print(f"nalar.AgentLoop over HTTP, 1 host:    {r['nalar_run_ms']:.1f} ms per run (median);"
          f" engine time per turn {r['engine_per_turn_ms']:.1f} ms")
    print(f"extra per turn: {r['extra_per_turn_ms']:.2f} ms = {100 * r['extra_ratio']:.2f} % of "
          f"a turn   target <= 5 %: {'met' if r['extra_ratio'] <= 0.05 else 'missed'}")
    print("cpu us per turn: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                          r["cpu_us_per_turn"].items()))
    print(json.dumps({k: v for k, v in r.items() if k != "cpu_us_per_turn"}))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
