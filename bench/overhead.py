"""Overhead benchmark (issue 2): a raw NATS request/reply round trip next to one no-op future
round trip through the real stack, and no-op futures per second, all measured in one run.

    .venv/bin/python bench/overhead.py [--nodes 1 --hosts-per-node 2] [--py-spy PATH]

Starts nats-server and valkey-server in a temp dir, the services as separate processes with
`python -m nalar up` (exactly as a user would), a raw NATS responder as another process, and
measures from an in-process Nalar runtime. Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nalar.context import CallContext, enter, leave
from nalar.runtime import Runtime
from nalar_common.bus import Bus, connect
from nalar_common.errors import NalarError
from nalar_common.servers import die_with_parent, nats_server_binary
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names
from stack import (
    MACHINE,
    CpuMeter,
    Stack,
    cpu_snapshot,
    nats_traffic,
    other_cores,
    pct,
    started_stack,
    stop_process,
    summary_ms,
    top_frames,
    traffic_per_op,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "bench" / "apps" / "noop"
OUT = ROOT / "bench" / "out"
AGENT, METHOD = "Noop", "noop"
TARGET_RATIO_P50 = 4.0
TARGET_FUTURES_PER_S = 1000.0
_OURS = ("nalar", "nats/", "msgpack", "overhead.py")  # profiled code summed per function


# -- the raw NATS responder (a separate process, like an agent host) ------------------------
async def responder(url: str, subject: str) -> None:
    nc = await nats.connect(url, name="bench-responder")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def reply(msg: Any) -> None:
        await msg.respond(b"")

    await nc.subscribe(subject, cb=reply)
    await nc.flush()
    print("ready", flush=True)
    await stop.wait()
    await nc.drain()


@dataclass
class RawStack(Stack):
    """The stack with the raw NATS responder beside it."""

    raw_subject: str = ""


@contextlib.contextmanager
def raw_stack(args: argparse.Namespace) -> Iterator[RawStack]:
    """The stack of `stack.started_stack` and the responder, in a process of its own."""
    with started_stack(APP, nodes=args.nodes, hosts_per_node=args.hosts_per_node,
                       log_level=args.log_level) as base, contextlib.ExitStack() as cleanup:
        raw_subject = f"{base.prefix}.bench.raw"
        resp = subprocess.Popen(
            [sys.executable, __file__, "responder", base.nats.url, raw_subject],
            stdout=subprocess.PIPE, preexec_fn=die_with_parent)
        cleanup.callback(stop_process, resp, 5)
        assert resp.stdout is not None
        if resp.stdout.readline().strip() != b"ready":
            raise RuntimeError("the raw NATS responder did not start")
        stack = RawStack(**vars(base), raw_subject=raw_subject)
        stack.pids["responder"] = resp.pid
        yield stack


# -- the measuring client -------------------------------------------------------------------
@contextlib.asynccontextmanager
async def client_runtime(stack: Stack, instances: int) -> AsyncIterator[Runtime]:
    settings = NatsSettings(url=stack.nats.url, prefix=stack.prefix)
    bus: Bus = await connect(settings, Names(stack.prefix), name="bench-client")
    rt = Runtime(bus)
    task = asyncio.create_task(rt.run())
    try:
        await rt.wait_ready()
        async with asyncio.timeout(30):  # instance heartbeats arrive through the KV watch
            while len(rt.view.live_instances(AGENT)) < instances:
                await rt.view.wait_changed()
        yield rt
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bus.close()


def new_context(rt: Runtime) -> CallContext:
    return CallContext(runtime=rt, run=uuid.uuid4().hex, session=uuid.uuid4().hex, future="0")


async def one_future(rt: Runtime, ctx: CallContext) -> tuple[float, str, float]:
    """(seconds from submit to value, future id, wall-clock time the value arrived)."""
    t0 = time.perf_counter()
    fut = rt.submit(ctx, AGENT, METHOD, (), {})
    await fut.wait(timeout=30)
    return time.perf_counter() - t0, fut.future, time.time()


async def one_raw(nc: Any, subject: str) -> float:
    t0 = time.perf_counter()
    await nc.request(subject, b"", timeout=5)
    return time.perf_counter() - t0


async def one_js(js: Any, subject: str) -> float:
    t0 = time.perf_counter()
    await js.publish(subject, b"")
    return time.perf_counter() - t0


async def latency(stack: RawStack, rt: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    """Sequential round trips; raw, JetStream-publish and future blocks alternate so that drift
    hits all alike. Also CPU per round trip of every process (where the time goes)."""
    nc = await nats.connect(stack.nats.url, name="bench-raw")
    js = nc.jetstream()
    js_stream, js_subject = f"{stack.prefix.upper()}_BENCH_JS", f"{stack.prefix}.bench.js"
    await js.add_stream(name=js_stream, subjects=[js_subject], storage="file")
    ctx = new_context(rt)
    token = enter(ctx)
    meter = CpuMeter(stack.pids)
    samples: dict[str, list[float]] = {"raw": [], "js": [], "future": []}
    arrived: dict[str, float] = {}
    try:
        for _ in range(args.warmup):
            await one_raw(nc, stack.raw_subject)
            await one_js(js, js_subject)
            await one_future(rt, ctx)
        blocks = args.blocks
        for _ in range(blocks):
            with meter.measure("raw"):
                for _ in range(args.raw_n // blocks):
                    samples["raw"].append(await one_raw(nc, stack.raw_subject))
            with meter.measure("js"):
                for _ in range(args.raw_n // blocks):
                    samples["js"].append(await one_js(js, js_subject))
            with meter.measure("future"):
                for _ in range(args.future_n // blocks):
                    dt, fid, at = await one_future(rt, ctx)
                    samples["future"].append(dt)
                    arrived[fid] = at
    finally:
        leave(token)
        with contextlib.suppress(Exception):
            await js.delete_stream(js_stream)
        await nc.drain()
    stages = await stage_breakdown(rt, ctx.run, arrived)
    r, f = summary_ms(samples["raw"]), summary_ms(samples["future"])
    return {"raw": r, "js_publish": summary_ms(samples["js"]), "future": f, "stages_ms": stages,
            "ratio_p50": round(f["p50_ms"] / r["p50_ms"], 2),
            "ratio_p99": round(f["p99_ms"] / r["p99_ms"], 2),
            "cpu_us_per_op": {k: meter.per_op_us(k, len(v)) for k, v in samples.items()},
            "cpu_cores_other_processes": meter.other_cores()}


async def stage_breakdown(rt: Runtime, run: str, arrived: dict[str, float]) -> dict[str, float]:
    """Median time per stage, from the timings every result carries (read back afterwards)."""
    parts: dict[str, list[float]] = {k: [] for k in (
        "submit_to_dispatch", "dispatch_to_start", "execute", "finish_to_client")}
    for fid, at in arrived.items():
        res = await rt.waiter.get(run, fid)
        if res is None:
            continue
        t = res.body().get("timings") or {}
        parts["submit_to_dispatch"].append(t["dispatched"] - t["created"])
        parts["dispatch_to_start"].append(t["started"] - t["dispatched"])
        parts["execute"].append(t["finished"] - t["started"])
        parts["finish_to_client"].append(at - t["finished"])
    return {k: round(pct(v, 50) * 1e3, 3) for k, v in parts.items() if v}


@dataclass
class Window:
    """A throughput phase: `size` workers each keep one future in flight."""

    size: int
    measuring: bool = False
    stop: bool = False
    done: int = 0
    total: int = 0
    errors: int = 0
    lat: list[float] = field(default_factory=list)

    async def worker(self, rt: Runtime, ctx: CallContext) -> None:
        while not self.stop:
            try:
                dt, _, _ = await one_future(rt, ctx)
            except NalarError:
                self.errors += 1
                continue
            self.total += 1
            if self.measuring:
                self.done += 1
                self.lat.append(dt)


async def throughput(stack: Stack, rt: Runtime, size: int, args: argparse.Namespace,
                     profile: dict[str, Path] | None = None) -> dict[str, Any]:
    w = Window(size)
    ctx = new_context(rt)
    spies: list[asyncio.subprocess.Process] = []
    async with asyncio.TaskGroup() as tg:
        for _ in range(size):
            tg.create_task(w.worker(rt, ctx))
        await asyncio.sleep(args.ramp)
        if profile:
            spies = [await asyncio.create_subprocess_exec(
                args.py_spy, "record", "--nonblocking", "-r", "100", "-f", "raw",
                "-d", str(int(args.duration)), "-p", str(stack.pids[name]), "-o", str(path),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, path in profile.items()]
        traffic0 = nats_traffic(stack.nats.monitor_port)
        cpu0, t0 = cpu_snapshot(stack.pids), time.perf_counter()
        w.measuring, done0 = True, w.total
        await asyncio.sleep(args.duration)
        w.measuring, done1 = False, w.total
        cpu1, t1 = cpu_snapshot(stack.pids), time.perf_counter()
        traffic = traffic_per_op(traffic0, nats_traffic(stack.nats.monitor_port), done1 - done0)
        w.stop = True
    for spy in spies:
        await spy.wait()
    elapsed = t1 - t0
    cores = {k: round((cpu1[k] - cpu0[k]) / elapsed, 3) for k in cpu0}
    others = other_cores(cores)
    del cores[MACHINE]
    return {"window": size, "futures_per_s": round(w.done / elapsed, 1), "completed": w.done,
            "completed_incl_ramp": w.total,
            "errors": w.errors, "seconds": round(elapsed, 2),
            "latency": summary_ms(w.lat) if w.lat else {},
            "cpu_cores": dict(sorted(cores.items(), key=lambda kv: -kv[1])),
            "cpu_cores_total": round(sum(cores.values()), 3),
            "cpu_us_per_future": {k: round(v / max(w.done / elapsed, 1e-9) * 1e6, 1)
                                  for k, v in cores.items() if v >= 0.005},
            "nats_per_future": traffic,
            "cpu_cores_other_processes": others}


# -- report ------------------------------------------------------------------------------------
def report(result: dict[str, Any]) -> None:
    lat, m = result["latency"], result["machine"]
    print(f"\nNalar overhead  ({m['cores']} cores, {m['python']}, nats-server {m['nats_server']}, "
          f"nodes={result['nodes']} x hosts-per-node={result['hosts_per_node']})")
    print(f"command: {result['command']}\n")
    print(f"{'round trip':<26}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, key in (("raw NATS request/reply", "raw"), ("JetStream publish+ack", "js_publish"),
                       ("no-op future", "future")):
        s = lat[key]
        print(f"{label:<26}{s['n']:>6}{s['p50_ms']:>9.3f}{s['p90_ms']:>9.3f}"
              f"{s['p99_ms']:>9.3f}{s['max_ms']:>9.3f}")
    ok = lat["ratio_p50"] <= TARGET_RATIO_P50
    print(f"{'ratio future/raw':<32}{lat['ratio_p50']:>8.2f}x{'':>9}{lat['ratio_p99']:>8.2f}x"
          f"   target p50 <= {TARGET_RATIO_P50:g}: {'met' if ok else 'NOT met'}")
    print("future stages, median ms: " + ", ".join(f"{k} {v:.3f}"
                                                   for k, v in lat["stages_ms"].items()))
    for phase, per in lat["cpu_us_per_op"].items():
        print(f"cpu us per {phase} round trip: " + ", ".join(f"{k} {v:.0f}"
                                                          for k, v in per.items()))
    print(f"\n{'window':>7}{'futures/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'cpu cores':>11}")
    for t in result["throughput"]:
        s = t["latency"]
        print(f"{t['window']:>7}{t['futures_per_s']:>11.1f}{s.get('p50_ms', 0):>9.1f}"
              f"{s.get('p99_ms', 0):>9.1f}{t['errors']:>8}{t['cpu_cores_total']:>11.2f}")
    best = result["best"]
    ok = best["futures_per_s"] >= TARGET_FUTURES_PER_S
    print(f"futures completed {result['futures_completed']}, results stored in "
          f"NALAR_FUTURES {result['futures_stored']}")
    print(f"best: {best['futures_per_s']:.1f} futures/s at window {best['window']}   "
          f"target >= {TARGET_FUTURES_PER_S:g}: {'met' if ok else 'NOT met'}")
    print("cpu (cores busy) during the best window: " + ", ".join(
        f"{k} {v:.2f}" for k, v in best["cpu_cores"].items() if v >= 0.005))
    print("cpu us per future in the best window: " + ", ".join(
        f"{k} {v:.0f}" for k, v in best["cpu_us_per_future"].items()))
    traffic = best["nats_per_future"]
    server = traffic.get("server", {})
    print(f"nats per future in the best window: server {server.get('in_msgs', 0):.2f} msgs in "
          f"({server.get('in_bytes', 0):.0f} B), {server.get('out_msgs', 0):.2f} out "
          f"({server.get('out_bytes', 0):.0f} B); published by " + ", ".join(
              f"{k} {v['in_msgs']:.2f}" for k, v in traffic.items() if k != "server"
              and v["in_msgs"] >= 0.01) + "; delivered to " + ", ".join(
              f"{k} {v['out_msgs']:.2f}" for k, v in traffic.items() if k != "server"
              and v["out_msgs"] >= 0.01))
    others = max(lat["cpu_cores_other_processes"], *(t["cpu_cores_other_processes"]
                                                      for t in result["throughput"]))
    if others >= 0.1:
        print(f"note: processes not started by this benchmark kept up to {others:.2f} cores "
              f"busy while it measured (latency phase {lat['cpu_cores_other_processes']:.2f}, "
              f"windows " + ", ".join(f"{t['cpu_cores_other_processes']:.2f}"
                                      for t in result["throughput"]) + "): figures are skewed")
    for name, frames in result.get("profile", {}).items():
        print(f"\npy-spy {name}: self " + ", ".join(f"{f} {s:.0%}" for f, s in frames["self"]))
        print(f"py-spy {name}: inclusive " + ", ".join(f"{f} {s:.0%}"
                                                        for f, s in frames["inclusive"]))


async def bench(stack: Stack, args: argparse.Namespace, result: dict[str, Any]) -> None:
    started = time.perf_counter()
    await wait_ready(stack, args.nodes)
    result["ready_s"] = round(time.perf_counter() - started, 1)
    async with client_runtime(stack, args.nodes * args.hosts_per_node) as rt:
        result["latency"] = await latency(stack, rt, args)
        result["throughput"] = [await throughput(stack, rt, size, args)
                                for size in args.windows]
        result["best"] = max(result["throughput"], key=lambda t: t["futures_per_s"])
        phases = list(result["throughput"])
        if args.py_spy:
            OUT.mkdir(parents=True, exist_ok=True)
            profile = {name: OUT / f"pyspy-{name}.txt" for name in stack.pids
                       if name.startswith(("client", "lc-", "host-"))}
            result["profiled"] = await throughput(stack, rt, result["best"]["window"], args,
                                                  profile)
            phases.append(result["profiled"])
            result["profile"] = {name: top_frames(path, _OURS)
                                 for name, path in profile.items() if path.exists()}
        # every completion counted above must be a result an agent host stored
        info = await rt.bus.js.stream_info(rt.bus.names.futures_stream)
        result["futures_completed"] = (args.warmup + result["latency"]["future"]["n"]
                                       + sum(t["completed_incl_ramp"] for t in phases))
        result["futures_stored"] = info.state.messages


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--hosts-per-node", type=int, default=2)
    p.add_argument("--raw-n", type=int, default=2000, help="raw request/reply round trips")
    p.add_argument("--future-n", type=int, default=1000, help="sequential no-op futures")
    p.add_argument("--warmup", type=int, default=200, help="of each, before measuring")
    p.add_argument("--blocks", type=int, default=4, help="alternating raw/future blocks")
    p.add_argument("--windows", type=lambda s: [int(x) for x in s.split(",")],
                   default=[128, 256, 512], help="futures in flight, comma separated")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per window")
    p.add_argument("--ramp", type=float, default=1.5, help="seconds before measuring a window")
    p.add_argument("--log-level", default="WARNING", help="NALAR_LOG_LEVEL of the services")
    p.add_argument("--py-spy", default="", metavar="PATH",
                   help="py-spy binary: profile client, controllers and hosts in one extra "
                        "window (raw stacks in bench/out/)")
    p.add_argument("--json", type=Path, default=OUT / "overhead.json")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["responder"]:
        asyncio.run(responder(argv[1], argv[2]))
        return 0
    args = parse_args(argv)
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True,
                             text=True).stdout.strip().split()[-1]
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/overhead.py", *argv]),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "nats_server": version},
        "nodes": args.nodes, "hosts_per_node": args.hosts_per_node}
    started = time.perf_counter()
    with raw_stack(args) as stack:
        asyncio.run(bench(stack, args, result))
    result["total_s"] = round(time.perf_counter() - started, 1)
    report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    summary = {"raw_p50_ms": result["latency"]["raw"]["p50_ms"],
               "raw_p99_ms": result["latency"]["raw"]["p99_ms"],
               "future_p50_ms": result["latency"]["future"]["p50_ms"],
               "future_p99_ms": result["latency"]["future"]["p99_ms"],
               "ratio_p50": result["latency"]["ratio_p50"],
               "ratio_p99": result["latency"]["ratio_p99"],
               "futures_per_s": result["best"]["futures_per_s"],
               "best_window": result["best"]["window"],
               "ratio_target_met": result["latency"]["ratio_p50"] <= TARGET_RATIO_P50,
               "throughput_target_met": result["best"]["futures_per_s"] >= TARGET_FUTURES_PER_S,
               "other_processes_cores_max": max(
                   result["latency"]["cpu_cores_other_processes"],
                   *(t["cpu_cores_other_processes"] for t in result["throughput"])),
               "total_s": result["total_s"]}
    print("\n" + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
