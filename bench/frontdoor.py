"""Front-door benchmark (issue 19): durable runs started over real HTTP, as a client would.

    .venv/bin/python bench/frontdoor.py [--duration 10] [--clients 32] [--signal-runs 1000]
                                   [--py-spy PATH]

Starts nats-server, valkey-server and `python -m nalar up --app bench/apps/frontdoor` (1 node,
2 agent hosts) like bench/overhead.py, then, over HTTP/1.1 keep-alive connections to the
gateway's port (`bench/keepalive.py`):

- **1 client**, then **32 clients** (closed loop: each sends its next
  `POST /v1/workflows/noop/runs?wait=30` when the last one answered): the driver and one no-op
  call; latency p50/p99, runs/s, the CPU per run of every process, NATS messages and Redis
  commands per run;
- **signal admission**: N runs of `wait_go` (its driver waits for a signal) started by 32
  clients without `?wait`: admitted/s (202s), and when every driver had recorded `waiting`.

Figures only: nothing here is asserted against a time. Writes bench/out/http.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from keepalive import HTTPError, KeepAlive, keepalive
from nalar_common.envelope import Envelope
from nalar_common.subjects import Names
from stack import (
    MACHINE,
    Stack,
    calls_per_op,
    cpu_snapshot,
    nats_traffic,
    other_cores,
    redis_calls,
    run_header,
    started_stack,
    summary_ms,
    top_frames,
    traffic_per_op,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "bench" / "apps" / "frontdoor"
OUT = ROOT / "bench" / "out"
RUN, WAIT_SIGNAL = "noop", "wait_go"
TARGET_P50_MS, TARGET_RUNS_PER_S = 8.0, 400.0
_OURS = ("nalar", "nats/", "msgpack", "redis/", "fastapi", "starlette", "uvicorn", "frontdoor.py")


@dataclass
class Clients:
    """A closed-loop phase: `size` clients each keep one request in flight."""

    size: int
    measuring: bool = False
    stop: bool = False
    done: int = 0
    total: int = 0
    lat: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: list[tuple[str, float, float]] = field(default_factory=list)  # run, sent, answered

    async def client(self, stack: Stack, wait: float) -> None:
        async with http_client(stack) as http:
            await self._loop(http, wait)

    async def _loop(self, http: KeepAlive, wait: float) -> None:
        while not self.stop:
            t0, sent = time.perf_counter(), time.time()
            try:
                r = await http.post(f"/v1/workflows/{RUN}/runs", params={"wait": wait},
                                    json_body={"input": {}})
                body = r.json()
                ok = r.status_code == 200 and body.get("status") == "succeeded"
                what = f"{r.status_code} {body.get('status') or body.get('error')}"
            except HTTPError as exc:
                ok, what, body = False, type(exc).__name__, {}
            dt = time.perf_counter() - t0
            if not ok:
                self.errors[what[:120]] += 1
                continue
            self.total += 1
            if self.measuring:
                self.done += 1
                self.lat.append(dt)
                self.sent.append((str(body["run_id"]), sent, sent + dt))


@contextlib.asynccontextmanager
async def http_client(stack: Stack) -> AsyncIterator[KeepAlive]:
    """One client: one keep-alive HTTP/1.1 connection (`bench/keepalive.py`: httpx spent
    about 1 ms of CPU per run, a fifth of what the whole stack spends, on the same 2 cores)."""
    async with keepalive(stack.url) as http:
        yield http


async def closed_loop(stack: Stack, size: int, args: argparse.Namespace,
                      profile: dict[str, Path] | None = None) -> dict[str, Any]:
    """`size` clients for `args.ramp` s unmeasured, then `args.duration` s measured."""
    w = Clients(size)
    spies: list[asyncio.subprocess.Process] = []
    async with asyncio.TaskGroup() as tg:
        for _ in range(size):
            tg.create_task(w.client(stack, args.wait))
        await asyncio.sleep(args.ramp)
        if profile:
            spies = [await asyncio.create_subprocess_exec(
                args.py_spy, "record", "--nonblocking", "--gil", "-r", "200", "-f", "raw",
                "-d", str(int(args.duration)), "-p", str(stack.pids[name]), "-o", str(path),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, path in profile.items()]
        traffic0, redis0 = nats_traffic(stack.nats.monitor_port), await redis_calls(
            stack.valkey.url)
        cpu0, t0 = cpu_snapshot(stack.pids), time.perf_counter()
        w.measuring = True
        await asyncio.sleep(args.duration)
        w.measuring = False
        cpu1, t1 = cpu_snapshot(stack.pids), time.perf_counter()
        traffic1, redis1 = nats_traffic(stack.nats.monitor_port), await redis_calls(
            stack.valkey.url)
        w.stop = True
    for spy in spies:
        await spy.wait()
    elapsed = t1 - t0
    cores = {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0}
    others = other_cores(cores)
    del cores[MACHINE]
    rate = w.done / elapsed
    return {"clients": size, "runs_per_s": round(rate, 1), "completed": w.done,
            "completed_incl_ramp": w.total, "errors": dict(w.errors),
            "seconds": round(elapsed, 2), "latency": summary_ms(w.lat) if w.lat else {},
            "cpu_cores": {k: round(v, 3) for k, v in sorted(cores.items(), key=lambda kv: -kv[1])},
            "cpu_cores_total": round(sum(cores.values()), 3),
            "cpu_us_per_run": {k: round(v / max(rate, 1e-9) * 1e6) for k, v in
                               sorted(cores.items(), key=lambda kv: -kv[1]) if v >= 0.005},
            "nats_per_run": traffic_per_op(traffic0, traffic1, w.done),
            "redis_per_run": calls_per_op(redis0, redis1, w.done),
            "stages_ms": await stages(stack, w.sent[-args.stage_runs:]),
            "cpu_cores_other_processes": others}


STAGES = (
    ("http_to_created", "the request, admission, until `created` is written (gateway)"),
    ("created_to_call", "`created` stored, the driver call built (gateway)"),
    ("driver_queued", "the driver call stored, admitted, dispatched (local controller)"),
    ("driver_dispatch", "dispatch to the driver starting (agent host)"),
    ("driver_to_call", "the driver running until its call is made (agent host)"),
    ("call_queued", "the call stored, admitted, dispatched (local controller)"),
    ("call_dispatch", "dispatch to the method starting (agent host)"),
    ("call_to_driver_end", "the call's result back in the driver, which returns (agent hosts)"),
    ("result_to_answer", "the run's result to the gateway, its view, the answer (gateway)"),
)


async def stages(stack: Stack, runs: list[tuple[str, float, float]]) -> dict[str, float]:
    """Median milliseconds per stage of the runs given (run, sent, answered wall times), from
    the `created` event and the timings the driver's and its call's results carry."""
    names = Names(stack.prefix)
    nc = await nats.connect(stack.nats.url, name="bench-stages")

    async def last(stream: str, subject: str) -> dict[str, Any]:
        msg = await nc.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=5)
        return Envelope.decode(msg.data).body if not (msg.headers or {}).get("Status") else {}

    parts: dict[str, list[float]] = {k: [] for k, _ in STAGES}
    try:
        for run, sent, answered in runs:
            created = await last(names.runs_stream, names.run_event(run, "created"))
            root = (await last(names.futures_stream, names.future(run, "0"))).get("timings")
            call = (await last(names.futures_stream, names.future(run, "1"))).get("timings")
            if not created or not root or not call:
                continue
            points = [sent, created["ts"], root["created"], root["dispatched"],
                      root["started"], call["created"], call["dispatched"], call["started"],
                      root["finished"], answered]
            for (key, _), a, b in zip(STAGES, points, points[1:], strict=False):
                parts[key].append(b - a)
    finally:
        await nc.drain()
    return {k: round(statistics.median(v) * 1e3, 3) for k, v in parts.items() if v}


async def admit_waiting(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Start `args.signal_runs` runs whose drivers wait for a signal, `args.clients` at a
    time, without `?wait`; admitted/s, and how long until every driver recorded `waiting`
    (counted from the journal with a core subscription, opened before the first run)."""
    names = Names(stack.prefix)
    nc = await nats.connect(stack.nats.url, name="bench-watch")
    waiting: set[str] = set()
    all_waiting = asyncio.Event()

    async def on_waiting(msg: Any) -> None:
        waiting.add(msg.subject)
        if len(waiting) >= args.signal_runs:
            all_waiting.set()

    await nc.subscribe(names.run_event("*", "waiting"), cb=on_waiting)
    await nc.flush()
    todo = iter(range(args.signal_runs))
    lat: list[float] = []
    errors: Counter[str] = Counter()

    async def client() -> None:
        async with http_client(stack) as http:
            await admit(http)

    async def admit(http: KeepAlive) -> None:
        for _ in todo:
            t0 = time.perf_counter()
            try:
                r = await http.post(f"/v1/workflows/{WAIT_SIGNAL}/runs",
                                    json_body={"input": {}})
                if r.status_code != 202:
                    errors[f"{r.status_code} {r.json().get('error')}"[:120]] += 1
                    continue
            except HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            lat.append(time.perf_counter() - t0)

    traffic0, redis0 = nats_traffic(stack.nats.monitor_port), await redis_calls(stack.valkey.url)
    cpu0, t0 = cpu_snapshot(stack.pids), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(args.clients):
            tg.create_task(client())
    cpu1, t1 = cpu_snapshot(stack.pids), time.perf_counter()
    traffic1, redis1 = nats_traffic(stack.nats.monitor_port), await redis_calls(stack.valkey.url)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.signal_settle):
            await all_waiting.wait()
    settled = time.perf_counter() - t0
    await nc.drain()
    elapsed = t1 - t0
    admitted = len(lat)
    cores = {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0}
    others = other_cores(cores)
    del cores[MACHINE]
    rate = admitted / elapsed
    return {"runs": args.signal_runs, "clients": args.clients, "admitted": admitted,
            "errors": dict(errors), "seconds": round(elapsed, 2),
            "admitted_per_s": round(rate, 1), "latency": summary_ms(lat) if lat else {},
            "waiting": len(waiting), "all_waiting_s": round(settled, 2)
            if all_waiting.is_set() else None,
            "cpu_cores": {k: round(v, 3) for k, v in sorted(cores.items(), key=lambda kv: -kv[1])},
            "cpu_us_per_run": {k: round(v / max(rate, 1e-9) * 1e6) for k, v in
                               sorted(cores.items(), key=lambda kv: -kv[1]) if v >= 0.005},
            "nats_per_run": traffic_per_op(traffic0, traffic1, admitted),
            "redis_per_run": calls_per_op(redis0, redis1, admitted),
            "cpu_cores_other_processes": others}


async def warm_up(stack: Stack, n: int) -> dict[str, int]:
    """`n` sequential runs; what they answered. None of them succeeding stops the bench."""
    answers: Counter[str] = Counter()
    if n <= 0:
        return {}
    async with http_client(stack) as http:
        for _ in range(n):
            r = await http.post(f"/v1/workflows/{RUN}/runs", params={"wait": 30},
                                json_body={"input": {}})
            answers[f"{r.status_code} {r.json().get('status') or r.json().get('error')}"] += 1
            last = r
    if not answers["200 succeeded"]:
        raise RuntimeError(f"no warm-up run succeeded; the last answered {last.status_code}: "
                           f"{last.body[:500]!r}")
    return dict(answers)


async def bench(stack: Stack, args: argparse.Namespace, result: dict[str, Any]) -> None:
    started = time.perf_counter()
    await wait_ready(stack, 1)
    result["ready_s"] = round(time.perf_counter() - started, 1)
    result["warmup"] = await warm_up(stack, args.warmup)
    result["phases"] = [await closed_loop(stack, size, args) for size in (1, args.clients)]
    if args.py_spy:
        OUT.mkdir(parents=True, exist_ok=True)
        profile = {name: OUT / f"pyspy-http-{name}.txt" for name in stack.pids
                   if name.startswith(("client", "gateway", "state-store", "lc-", "host-"))}
        result["profiled"] = await closed_loop(stack, args.clients, args, profile)
        result["profile"] = {name: top_frames(path, _OURS)
                             for name, path in profile.items() if path.exists()}
    result["signal"] = await admit_waiting(stack, args)


# -- report ------------------------------------------------------------------------------------
def _per_run(row: dict[str, Any]) -> str:
    cpu = ", ".join(f"{k} {v}" for k, v in row["cpu_us_per_run"].items())
    traffic = row["nats_per_run"]
    server = traffic.get("server", {})
    pubs = ", ".join(f"{k} {v['in_msgs']:.2f}" for k, v in traffic.items()
                     if k != "server" and v["in_msgs"] >= 0.01)
    redis = ", ".join(f"{k} {v:.2f}" for k, v in row["redis_per_run"].items())
    return (f"  cpu us per run: {cpu}\n"
            f"  nats per run: server {server.get('in_msgs', 0):.1f} msgs in, "
            f"{server.get('out_msgs', 0):.1f} out; published by {pubs}\n"
            f"  redis commands per run: {redis or 'none'}")


def report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"\nNalar front door  ({m['cores']} cores, {m['python']}, nats-server "
          f"{m['nats_server']}, 1 node x 2 agent hosts)")
    print(f"command: {result['command']}\n")
    print(f"{'clients':>8}{'runs/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'errors':>8}{'cpu cores':>11}")
    for row in result["phases"]:
        s = row["latency"]
        print(f"{row['clients']:>8}{row['runs_per_s']:>9.1f}{s.get('p50_ms', 0):>9.2f}"
              f"{s.get('p90_ms', 0):>9.2f}{s.get('p99_ms', 0):>9.2f}{s.get('max_ms', 0):>9.1f}"
              f"{sum(row['errors'].values()):>8}{row['cpu_cores_total']:>11.2f}")
    if set(result["warmup"]) != {"200 succeeded"}:
        print(f"warm-up answers: {result['warmup']}")
    for row in result["phases"]:
        print(f"{row['clients']} client(s):\n{_per_run(row)}")
        print("  stages, median ms: " + ", ".join(f"{k} {v:.2f}"
                                                  for k, v in row["stages_ms"].items()))
        for what, n in row["errors"].items():
            print(f"  error x{n}: {what}")
    one, many = result["phases"][0], result["phases"][-1]
    p50 = one["latency"].get("p50_ms", float("inf"))
    print(f"targets: p50 with 1 client <= {TARGET_P50_MS:g} ms: "
          f"{'met' if p50 <= TARGET_P50_MS else 'NOT met'} ({p50:.2f}); "
          f">= {TARGET_RUNS_PER_S:g} runs/s with {many['clients']} clients: "
          f"{'met' if many['runs_per_s'] >= TARGET_RUNS_PER_S else 'NOT met'} "
          f"({many['runs_per_s']:.1f})")
    sig = result["signal"]
    lat = sig["latency"]
    print(f"\nsignal-waiting runs: {sig['admitted']}/{sig['runs']} admitted in {sig['seconds']} s "
          f"by {sig['clients']} clients = {sig['admitted_per_s']:.1f} admitted/s (p50 "
          f"{lat.get('p50_ms', 0):.1f} ms, p99 {lat.get('p99_ms', 0):.1f} ms); all waiting "
          f"after {sig['all_waiting_s']} s ({sig['waiting']} waiting)")
    print(_per_run(sig))
    for what, n in sig["errors"].items():
        print(f"  error x{n}: {what}")
    others = max(r["cpu_cores_other_processes"] for r in [*result["phases"], sig])
    if others >= 0.1:
        print(f"note: processes not started by this benchmark kept up to {others:.2f} cores "
              "busy while it measured: figures are skewed")
    for name, frames in result.get("profile", {}).items():
        print(f"\npy-spy {name}: self " + ", ".join(f"{f} {s:.0%}" for f, s in frames["self"]))
        print(f"py-spy {name}: inclusive " + ", ".join(f"{f} {s:.0%}"
                                                        for f, s in frames["inclusive"]))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32, help="clients of the second phase and "
                   "of the signal admission")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    p.add_argument("--ramp", type=float, default=2.0, help="seconds before measuring a phase")
    p.add_argument("--warmup", type=int, default=50, help="sequential runs before measuring")
    p.add_argument("--wait", type=float, default=30.0, help="the runs' `?wait=`")
    p.add_argument("--stage-runs", type=int, default=300,
                   help="the last runs of each phase whose stages are read back")
    p.add_argument("--signal-runs", type=int, default=1000,
                   help="runs that wait for a signal, admitted in the last phase")
    p.add_argument("--signal-settle", type=float, default=30.0,
                   help="seconds to wait, after the last admission, for every driver to "
                        "record `waiting`")
    p.add_argument("--log-level", default="WARNING", help="NALAR_LOG_LEVEL of the services")
    p.add_argument("--py-spy", default="", metavar="PATH",
                   help="py-spy binary: profile the client, gateway, state store, controller "
                        "and hosts in one extra phase (raw stacks in bench/out/)")
    p.add_argument("--json", type=Path, default=OUT / "http.json")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = run_header("bench/frontdoor.py", argv)
    started = time.perf_counter()
    with started_stack(APP, nodes=1, hosts_per_node=2, log_level=args.log_level) as stack:
        asyncio.run(bench(stack, args, result))
    result["total_s"] = round(time.perf_counter() - started, 1)
    report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    one, many, sig = result["phases"][0], result["phases"][-1], result["signal"]
    summary = {"p50_ms_1": one["latency"].get("p50_ms"), "p99_ms_1": one["latency"].get("p99_ms"),
               "runs_per_s_1": one["runs_per_s"],
               f"p50_ms_{many['clients']}": many["latency"].get("p50_ms"),
               f"p99_ms_{many['clients']}": many["latency"].get("p99_ms"),
               f"runs_per_s_{many['clients']}": many["runs_per_s"],
               "signal_admitted_per_s": sig["admitted_per_s"],
               "signal_all_waiting_s": sig["all_waiting_s"],
               "errors": sum(sum(r["errors"].values()) for r in [*result["phases"], sig])
               + sum(n for k, n in result["warmup"].items() if k != "200 succeeded"),
               "total_s": result["total_s"]}
    print("\n" + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
