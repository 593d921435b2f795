"""Engine benchmark (issue 4): throughput and latency against batch size for the simulated
engine, next to the same curve on the real vLLM CPU engine with SmolLM2-135M.

    make bench-engine          # = .venv/bin/python bench/engine.py

For each batch size B it sends B requests at once (each asks for the same number of output
tokens) a few times and reports output tokens/s, median time to first token and median
request time. The simulated engine runs with its A100/8B defaults (docs/engines.md) in real
time; vLLM runs here on one CPU core (deploy/vllm/serve.sh), skipped with a note when its
environment is not built (`make vllm`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nalar.engines import LLMRequest, SimulatedEngine
from nalar.engines.openai import OpenAIEngine

ROOT = Path(__file__).resolve().parents[1]


async def curve(engine: Any, batches: list[int], tokens: int, reps: int) -> list[dict[str, Any]]:
    rows = []
    for b in batches:
        tps, ttft, total = [], [], []
        for r in range(reps):
            reqs = [LLMRequest(messages=[{"role": "user", "content":
                                          f"Write about topic {r}-{i} in detail."}],
                               max_tokens=tokens, session=f"s{r}-{i}") for i in range(b)]
            t0 = time.monotonic()
            done = await asyncio.gather(*[engine.complete(q) for q in reqs])
            wall = time.monotonic() - t0
            tps.append(sum(c.completion_tokens for c in done) / wall)
            ttft += [c.timings["ttft_s"] for c in done]
            total += [c.timings["total_s"] for c in done]
        rows.append({"batch": b, "tokens_per_s": round(statistics.median(tps), 1),
                     "ttft_p50_ms": round(statistics.median(ttft) * 1e3, 1),
                     "request_p50_ms": round(statistics.median(total) * 1e3, 1)})
        print(f"  batch {b:>3}: {rows[-1]['tokens_per_s']:>8} tok/s  ttft p50 "
              f"{rows[-1]['ttft_p50_ms']:>8} ms  request p50 {rows[-1]['request_p50_ms']:>9} ms",
              flush=True)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def vllm_curve(batches: list[int], tokens: int,
                     reps: int) -> list[dict[str, Any]] | str:
    """A benchmark driver, not a service: blocking start-up calls are fine here."""
    if not (ROOT / ".venv-vllm" / "bin" / "python").exists():
        return "skipped: no vLLM environment (run `make vllm`)"
    port = _free_port()
    log = open(ROOT / "bench" / "out" / "vllm-server.log", "wb")
    proc = subprocess.Popen([str(ROOT / "deploy" / "vllm" / "serve.sh"), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                return f"skipped: the vLLM server exited ({proc.returncode}), see bench/out"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                return "skipped: the vLLM server did not become healthy in 300 s"
            await asyncio.sleep(1)
        eng = OpenAIEngine([f"http://127.0.0.1:{port}/v1"], model="smollm2")
        await curve(eng, [1], tokens, 1)  # warm-up
        return await curve(eng, batches, tokens, reps)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    batches = [int(b) for b in args.batches.split(",")]
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    print("simulated engine (8B on A100 defaults, real time):", flush=True)
    sim = await curve(SimulatedEngine(output_sigma=0.0, output_median_tokens=args.tokens),
                      batches, args.tokens, args.reps)
    print("vLLM CPU engine (SmolLM2-135M, 1 core):", flush=True)
    real = await vllm_curve(batches, args.tokens, args.reps)
    if isinstance(real, str):
        print("  " + real)
    return {"tokens": args.tokens, "simulated": sim, "vllm_cpu": real}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", default="1,2,4,8,16,32")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    result = asyncio.run(main(p.parse_args()))
    Path(ROOT / "bench" / "out" / "engine.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    sys.exit(0)
