"""What guardrails cost (issue 8): the same workflow — one agent call making 20 LLM requests
one after another on the simulated engine — with no guardrails file and with limits that bind
every request (tokens and LLM calls per run, cost per tenant), interleaved run by run on one
stack, medians compared.

    .venv/bin/python bench/guardrails.py [--runs 40]

Starts nats-server, valkey-server and `nalar up` (tests/apps/governed) in a temp dir and
stops them before it exits. Prints a JSON summary (bench/RESULTS.md has the numbers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from nalar_common.servers import start_nats, start_valkey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from e2e_stack import NO_LIMITS, start_stack, stop_stack  # noqa: E402

LIMITS = """
prices: {simulated: {prompt: 0.5, completion: 1.5}, default: {prompt: 3, completion: 15}}
limits:
  - {name: run-tokens, tokens: 10000000, action: abort}
  - {name: run-requests, llm_calls: 100000, action: reject}
  - {name: tenant-spend, scope: tenant, cost: 1000000, window: 24h, action: pause}
"""
REQUESTS = 20


def one(url: str) -> float:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/workflows/spend/runs", params={"wait": 60}, timeout=90,
                   json={"input": {"calls": 1, "requests": REQUESTS, "max_tokens": 8}})
    took = time.perf_counter() - t0
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        nats, valkey = start_nats(d / "nats"), start_valkey(d / "valkey")
        limits = d / "guardrails.yaml"
        limits.write_text(NO_LIMITS)
        stack = start_stack(ROOT / "tests" / "apps" / "governed", nats.url, valkey.url,
                            d / "nalar-up.log", nodes=1,
                            extra_env={"NALAR_GUARDRAILS_FILE": str(limits),
                                       "NALAR_LOG_LEVEL": "WARNING"},
                            args=("--llm-time-scale", "0.01"))  # engine time ~ 0: see the cost
        try:
            times: dict[str, list[float]] = {"off": [], "on": []}
            for i in range(args.runs * 2 + 4):
                mode = "on" if i % 2 else "off"
                if mode == "on":
                    limits.write_text(LIMITS)
                else:
                    limits.write_text(NO_LIMITS)
                time.sleep(1.1)  # the controller rereads the file within a second
                took = one(stack.url)
                if i >= 4:  # warm-up
                    times[mode].append(took)
        finally:
            stop_stack(stack)
            valkey.stop()
            nats.stop()
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(json.dumps({
        "runs_each": args.runs, "llm_requests_per_run": REQUESTS,
        "median_run_s": {"off": round(off, 4), "on": round(on, 4)},
        "ratio_on_off": round(on / off, 3),
        "added_per_llm_request_ms": round((on - off) / REQUESTS * 1000, 3)}, indent=2))


if __name__ == "__main__":
    main()
