"""Agent-graph lifetimes at scale (issue 21, "Scale"): many lifetimes waiting for a person at
once, Plan decisions while they wait, and a restart of every service under them.

    .venv/bin/python bench/lifetimes.py [--lifetimes 10000] [--cycles 300] [--signal-live 500]

Starts nats-server, valkey-server and `python -m nalar up --app bench/apps/lifetimes` (1 node,
2 agent hosts, simulated engine) as bench/frontdoor.py does, then:

1. **baseline**: after a few warm-up lifetimes, the RSS of every service process and what
   JetStream stores;
2. **waiting**: starts `--lifetimes` lifetimes of `approval` (prepare -> review -> approve, a
   person: the signal `approve-1`, with a one-day timeout -> conclude -> apply -> FINAL)
   over HTTP by `--clients` clients; checks every one shows `waiting` for `approve-1`
   (`GET /v1/runs/{id}`) and that no agent host holds a call (`GET /v1/cluster`); RSS again:
   bytes per waiting lifetime, and the signal timers the state store holds;
3. **decisions**: while they wait, `--cycles` lifetimes of `cycles` (work -> decide -> work
   ... `--rounds` works), `--cycle-clients` at a time, and meanwhile `--signal-live` of the
   waiting lifetimes signalled at `--signal-rate`/s: the Plan decision latency is a work's
   `finished` to the next work's `dispatched` (the timings of their futures); a signalled
   lifetime's resume is the signal's POST to its `apply` task's `dispatched`;
4. **restart**: stops `nalar up`, valkey-server and nats-server (data dirs kept), starts them
   again; the time until the stack is ready and every remaining lifetime reads `waiting`,
   then signals them all and the time until every one has `succeeded`.

Prints the figures and a JSON summary line; writes bench/results/lifetimes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import nats
from keepalive import HTTPError, keepalive
from nalar_common.subjects import Names
from procstat import rss_bytes
from stack import (
    Stack,
    run_header,
    start_again,
    started_stack,
    stop_stack,
    summary_ms,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "bench" / "apps" / "lifetimes"
RESULTS = ROOT / "bench" / "results"
SIGNAL = "approve-1"
TARGET_DECISION_P99_MS = 250.0
RETRY_STATUSES = (429, 503)


# -- measuring -------------------------------------------------------------------------------
def rss(stack: Stack) -> dict[str, int]:
    return {name: rss_bytes(pid) for name, pid in sorted(stack.pids.items())
            if name not in ("client", "nalar-up")}


def jetstream(stack: Stack) -> dict[str, Any]:
    """What JetStream stores (file and memory), and each stream's messages, bytes and
    consumers (`/jsz`)."""
    port = stack.nats.monitor_port
    jsz = httpx.get(f"http://127.0.0.1:{port}/jsz?streams=true&consumers=true&accounts=true",
                    timeout=30).json()
    streams: dict[str, Any] = {}
    timers = 0  # signal events the state store holds as timers (unacked)
    for account in jsz.get("account_details") or []:
        for s in account.get("stream_detail") or []:
            st = s.get("state") or {}
            streams[s["name"]] = {"messages": st.get("messages", 0), "bytes": st.get("bytes", 0),
                                  "consumers": st.get("consumer_count", 0)}
            timers += sum(int(c.get("num_ack_pending", 0)) for c in s.get("consumer_detail") or []
                          if c.get("name") == "state_store_signal_timers")
    subsz = httpx.get(f"http://127.0.0.1:{port}/subsz", timeout=30).json()
    return {"storage_bytes": jsz.get("storage", 0), "memory_bytes": jsz.get("memory", 0),
            "consumers": jsz.get("consumers", 0), "subscriptions": subsz.get("num_subscriptions"),
            "timers_held": timers, "streams": streams}


class Watch:
    """Run ids seen on a subject pattern (a core subscription: counts as they come)."""

    def __init__(self, position: int) -> None:
        self.position, self.seen, self.changed = position, set[str](), asyncio.Event()

    async def on(self, msg: Any) -> None:
        self.seen.add(msg.subject.split(".")[self.position])
        self.changed.set()

    async def until(self, runs: Iterable[str], timeout: float, what: str) -> float:
        """Seconds until every run in `runs` was seen (raises on timeout)."""
        want, t0 = set(runs), time.perf_counter()
        deadline = t0 + timeout
        while not want <= self.seen:
            self.changed.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{what}: {len(want - self.seen)} of {len(want)} missing "
                                   f"after {timeout:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 5.0))
        return time.perf_counter() - t0


async def watches(stack: Stack) -> tuple[Any, Watch, Watch]:
    """A NATS connection watching every run's `waiting` event and root result."""
    names = Names(stack.prefix)
    nc = await nats.connect(stack.nats.url, name="bench-lifetimes", max_reconnect_attempts=-1)
    waiting, finished = Watch(-2), Watch(-2)
    await nc.subscribe(names.run_event("*", "waiting"), cb=waiting.on)
    await nc.subscribe(names.future("*", "0"), cb=finished.on)
    await nc.flush()
    return nc, waiting, finished


# -- HTTP --------------------------------------------------------------------------------------
async def posts(stack: Stack, items: list[Any], clients: int,
                request: Callable[[Any], tuple[str, Any]], rate: float = 0.0
                ) -> tuple[list[tuple[Any, dict[str, Any], float]], Counter[str]]:
    """POST one request per item by `clients` keep-alive clients (at most `rate` a second
    when given); a 429/503 is retried after a pause (counted). Returns (item, answer, time
    sent) per item answered 2xx, and the other answers by status."""
    todo = iter(items)
    done: list[tuple[Any, dict[str, Any], float]] = []
    errors: Counter[str] = Counter()
    t0, issued = time.perf_counter(), 0

    async def client() -> None:
        nonlocal issued
        async with keepalive(stack.url) as http:
            for item in todo:
                if rate:
                    issued += 1
                    await asyncio.sleep(max(0.0, t0 + issued / rate - time.perf_counter()))
                path, body = request(item)
                for attempt in range(60):
                    sent = time.time()
                    try:
                        r = await http.post(path, json_body=body)
                    except HTTPError as exc:
                        errors[type(exc).__name__] += 1
                        await asyncio.sleep(0.5)
                        continue
                    if r.status_code in RETRY_STATUSES:
                        errors[f"{r.status_code} (retried)"] += 1
                        await asyncio.sleep(min(2.0, 0.1 * (attempt + 1)))
                        continue
                    if r.status_code >= 300:
                        errors[f"{r.status_code} {r.body[:200]!r}"] += 1
                    else:
                        done.append((item, r.json(), sent))
                    break

    async with asyncio.TaskGroup() as tg:
        for _ in range(clients):
            tg.create_task(client())
    return done, errors


async def gets(stack: Stack, paths: list[str], clients: int) -> list[dict[str, Any] | None]:
    """GET each path (`clients` keep-alive clients); None where it did not answer 200."""
    out: list[dict[str, Any] | None] = [None] * len(paths)
    todo = iter(enumerate(paths))

    async def client() -> None:
        async with keepalive(stack.url) as http:
            for i, path in todo:
                with contextlib.suppress(HTTPError):
                    r = await http.get(path)
                    if r.status_code == 200:
                        out[i] = r.json()

    async with asyncio.TaskGroup() as tg:
        for _ in range(clients):
            tg.create_task(client())
    return out


async def statuses(stack: Stack, runs: list[str], clients: int) -> Counter[str]:
    """How many of the runs show each status (`waiting approve-1` for the ones waiting for
    the approval; `unreadable` where the view did not answer)."""
    views = await gets(stack, [f"/v1/runs/{r}" for r in runs], clients)
    counts: Counter[str] = Counter()
    for v in views:
        if v is None:
            counts["unreadable"] += 1
        elif v["status"] == "waiting":
            counts[f"waiting {(v.get('waiting_for') or {}).get('signal')}"] += 1
        else:
            counts[str(v["status"])] += 1
    return counts


async def inflight(stack: Stack) -> int:
    """Calls the agent hosts hold, from the cluster view (their last reports)."""
    async with httpx.AsyncClient(timeout=10) as http:
        cluster = (await http.get(f"{stack.url}/v1/cluster")).json()
    return sum(int(n.get("inflight", 0)) for n in cluster["nodes"].values())


async def settled_inflight(stack: Stack, timeout: float = 30.0) -> int:
    """The hosts' in-flight calls once they report none (or the last count after `timeout`)."""
    deadline = time.monotonic() + timeout
    n = await inflight(stack)
    for _ in range(int(timeout)):
        if not n or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
        n = await inflight(stack)
    return n


# -- phases ------------------------------------------------------------------------------------
def start_request(graph: str) -> Callable[[Any], tuple[str, Any]]:
    return lambda item: (f"/v1/graphs/{graph}/runs", {"input": {"input": item}})


def signal_request(run: str) -> tuple[str, Any]:
    return f"/v1/runs/{run}/signals/{SIGNAL}", {"value": {"approved": True}}


async def timed(what: str, step: Awaitable[Any]) -> Any:
    t0 = time.perf_counter()
    out = await step
    print(f"  {what}: {time.perf_counter() - t0:.1f}s", flush=True)
    return out


async def start_waiting(stack: Stack, waiting: Watch, args: argparse.Namespace
                        ) -> dict[str, Any]:
    t0 = time.perf_counter()
    done, errors = await posts(stack, list(range(args.lifetimes)), args.clients,
                               start_request("approval"))
    admitted_s = time.perf_counter() - t0
    runs = [str(answer["run_id"]) for _, answer, _ in done]
    print(f"  {len(runs)} admitted in {admitted_s:.1f}s ({dict(errors)})", flush=True)
    all_waiting_s = await waiting.until(runs, args.settle, "lifetimes waiting")
    counts = await timed("statuses read", statuses(stack, runs, args.clients))
    held = await settled_inflight(stack)
    return {"runs": runs, "admitted": len(runs), "admitted_s": round(admitted_s, 1),
            "admitted_per_s": round(len(runs) / admitted_s, 1), "errors": dict(errors),
            "all_waiting_s": round(time.perf_counter() - t0 if all_waiting_s else 0, 1),
            "statuses": dict(counts), "inflight_calls": held}


def decision_gaps(futures: list[dict[str, Any]], task: str) -> list[float]:
    """Seconds from each `task` execution's `finished` to the next one's `dispatched`."""
    works = [f["timings"] for f in futures
             if str(f.get("method", "")).endswith(f"__{task}") and f.get("timings")]
    return [b["dispatched"] - a["finished"] for a, b in itertools.pairwise(works)
            if "dispatched" in b and "finished" in a]


async def decisions(stack: Stack, runs: list[str], args: argparse.Namespace
                    ) -> dict[str, Any]:
    """Cycles lifetimes (and live signals meanwhile): decision and resume latencies."""
    live = runs[:args.signal_live]

    async def cycles() -> tuple[list[Any], Counter[str]]:
        return await posts(stack, [{"rounds": args.rounds}] * args.cycles, args.cycle_clients,
                           lambda item: ("/v1/graphs/cycles/runs?wait=120",
                                         {"input": {"input": item}}))

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        cyc = tg.create_task(cycles())
        sig = tg.create_task(posts(stack, live, 4, signal_request, rate=args.signal_rate))
    elapsed = time.perf_counter() - t0
    (cdone, cerr), (sdone, serr) = cyc.result(), sig.result()
    crun = [str(a["run_id"]) for _, a, _ in cdone]
    ok = sum(1 for _, a, _ in cdone if a.get("status") == "succeeded")
    futs = await gets(stack, [f"/v1/runs/{r}/futures" for r in crun], 8)
    gaps = [g for f in futs if f for g in decision_gaps(f["futures"], "work")]
    stages = plan_stages([f["futures"] for f in futs if f])
    resumed: list[float] = []
    sent = {run: at for run, _, at in sdone}
    await asyncio.sleep(2.0)
    sfuts = await gets(stack, [f"/v1/runs/{r}/futures" for r in sent], 8)
    for run, f in zip(sent, sfuts, strict=True):
        apply = [x["timings"] for x in (f or {}).get("futures", [])
                 if str(x.get("method", "")).endswith("__apply") and x.get("timings")]
        if apply and "dispatched" in apply[-1]:
            resumed.append(apply[-1]["dispatched"] - sent[run])
    return {"cycles": len(crun), "cycles_succeeded": ok, "rounds": args.rounds,
            "cycle_clients": args.cycle_clients, "seconds": round(elapsed, 1),
            "cycle_errors": dict(cerr), "decision": summary_ms(gaps) if gaps else {},
            "plan_stages_ms": stages, "signalled": len(sent), "signal_errors": dict(serr),
            "signal_rate": args.signal_rate,
            "resume": summary_ms(resumed) if resumed else {}, "signalled_runs": list(sent)}


def plan_stages(runs: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Median ms of a decision's parts: the work's result to the driver starting the plan,
    the plan queued, the plan running, its result to the driver starting the next work, the
    next work queued."""
    parts: dict[str, list[float]] = {k: [] for k in (
        "work_finished_to_plan_created", "plan_created_to_dispatched", "plan_dispatched_to_"
        "finished", "plan_finished_to_work_created", "work_created_to_dispatched")}
    for futures in runs:
        rows = [f.get("timings") or {} for f in futures if f.get("agent") == "tools"]
        for a, p, b in zip(rows[0::2], rows[1::2], rows[2::2], strict=False):
            try:
                points = [a["finished"], p["created"], p["dispatched"], p["finished"],
                          b["created"], b["dispatched"]]
            except KeyError:
                continue
            for key, x, y in zip(parts, points, points[1:], strict=False):
                parts[key].append(y - x)
    return {k: round(statistics.median(v) * 1e3, 2) for k, v in parts.items() if v}


async def restart(stack: Stack, runs: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Stop every service and server, start them again, read every remaining lifetime back,
    then signal them all and wait until every one has finished."""
    t0 = time.perf_counter()
    await asyncio.to_thread(stop_stack, stack)
    stopped_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    await asyncio.to_thread(start_again, stack)
    servers_s = time.perf_counter() - t1
    await wait_ready(stack, args.nodes, timeout=600)
    ready_s = time.perf_counter() - t1
    print(f"  stopped in {stopped_s:.1f}s; servers up in {servers_s:.1f}s, stack ready "
          f"after {ready_s:.1f}s", flush=True)
    t2, passes = time.perf_counter(), 0
    pending = list(runs)
    counts: Counter[str] = Counter()
    while pending and time.perf_counter() - t2 < args.settle:
        passes += 1
        views = await gets(stack, [f"/v1/runs/{r}" for r in pending], args.clients)
        pending = [r for r, v in zip(pending, views, strict=True)
                   if v is None or v["status"] != "waiting"]
        counts = Counter("unreadable" if v is None else v["status"] for v in views)
    recover_s = time.perf_counter() - t2
    print(f"  all readable and waiting {recover_s:.1f}s after ready ({passes} passes, "
          f"{len(pending)} not: {dict(counts)})", flush=True)
    after = {"rss": rss(stack), "jetstream": jetstream(stack)}
    nc, _, finished = await watches(stack)
    try:
        t3 = time.perf_counter()
        sdone, serr = await posts(stack, runs, args.clients, signal_request)
        signalled_s = time.perf_counter() - t3
        print(f"  {len(sdone)} signalled in {signalled_s:.1f}s ({dict(serr)})", flush=True)
        with contextlib.suppress(TimeoutError):
            await finished.until(runs, args.settle, "lifetimes finished")
        finish_s = time.perf_counter() - t3
    finally:
        await nc.drain()
    final = await timed("statuses read", statuses(stack, runs, args.clients))
    return {"lifetimes": len(runs),
            "stop_s": round(stopped_s, 1),
            "servers_s": round(servers_s, 1), "ready_s": round(ready_s, 1),
            "recover_s": round(recover_s, 1), "not_waiting": len(pending),
            "signalled": len(sdone), "signal_errors": dict(serr),
            "signalled_s": round(signalled_s, 1), "finish_s": round(finish_s, 1),
            "finished": len(finished.seen & set(runs)), "finished_statuses": dict(final),
            "after_restart": after}


async def warm_up(stack: Stack, n: int) -> None:
    done, errors = await posts(stack, [{"rounds": 2}] * n, 2,
                               lambda item: ("/v1/graphs/cycles/runs?wait=60",
                                             {"input": {"input": item}}))
    if not any(a.get("status") == "succeeded" for _, a, _ in done):
        raise RuntimeError(f"no warm-up lifetime succeeded: {done[-1:]} {dict(errors)}")


async def bench(stack: Stack, args: argparse.Namespace, result: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    await wait_ready(stack, args.nodes)
    result["ready_s"] = round(time.perf_counter() - t0, 1)
    await warm_up(stack, args.warmup)
    await asyncio.sleep(2.0)
    result["baseline"] = {"rss": rss(stack), "jetstream": jetstream(stack)}
    nc, waiting, _ = await watches(stack)
    print(f"starting {args.lifetimes} approval lifetimes", flush=True)
    try:
        started = await start_waiting(stack, waiting, args)
    finally:
        await nc.drain()
    runs = started.pop("runs")
    await asyncio.sleep(3.0)
    result["waiting"] = {**started, "rss": rss(stack), "jetstream": jetstream(stack)}
    print(f"  {started['statuses']}; hosts hold {started['inflight_calls']} calls", flush=True)
    print(f"decisions: {args.cycles} cycles lifetimes, {args.signal_live} signalled", flush=True)
    dec = await decisions(stack, runs, args)
    dec["timers_held"] = jetstream(stack)["timers_held"]
    live = set(dec.pop("signalled_runs"))
    result["decisions"] = dec
    remaining = [r for r in runs if r not in live]
    print(f"restart, then {len(remaining)} lifetimes signalled", flush=True)
    result["restart"] = await restart(stack, remaining, args)


# -- report ------------------------------------------------------------------------------------
def per_lifetime(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    return {k: round((after.get(k, 0) - v) / max(n, 1)) for k, v in before.items()}


def report(result: dict[str, Any]) -> dict[str, Any]:
    """Prints the figures; returns the summary."""
    m, base, wait = result["machine"], result["baseline"], result["waiting"]
    n = wait["admitted"]
    mem = per_lifetime(base["rss"], wait["rss"], n)
    js = wait["jetstream"]["storage_bytes"] - base["jetstream"]["storage_bytes"]
    print(f"\nNalar lifetimes  ({m['cores']} cores, {m['python']}, nats-server "
          f"{m['nats_server']}, {result['nodes']} node x {result['hosts_per_node']} hosts)")
    print(f"command: {result['command']}\n")
    print(f"{n} lifetimes admitted in {wait['admitted_s']}s ({wait['admitted_per_s']}/s; "
          f"{wait['errors'] or 'no refusals'}), all waiting after {wait['all_waiting_s']}s: "
          f"{wait['statuses']}; calls held by hosts: {wait['inflight_calls']}")
    print(f"{'process':<20}{'baseline MiB':>14}{'waiting MiB':>13}{'bytes/lifetime':>16}")
    for k in base["rss"]:
        print(f"{k:<20}{base['rss'][k] / 2**20:>14.1f}{wait['rss'].get(k, 0) / 2**20:>13.1f}"
              f"{mem[k]:>16,}")
    total = sum(mem.values())
    print(f"{'total':<20}{sum(base['rss'].values()) / 2**20:>14.1f}"
          f"{sum(wait['rss'].values()) / 2**20:>13.1f}{total:>16,}")
    streams = wait["jetstream"]["streams"]
    print(f"JetStream storage: {base['jetstream']['storage_bytes'] / 2**20:.1f} -> "
          f"{wait['jetstream']['storage_bytes'] / 2**20:.1f} MiB ({js / max(n, 1):,.0f} "
          f"bytes/lifetime); consumers {wait['jetstream']['consumers']}, core subscriptions "
          f"{base['jetstream']['subscriptions']} -> {wait['jetstream']['subscriptions']}; "
          + ", ".join(
              f"{k} {v['messages']} msgs {v['bytes'] / 2**20:.1f} MiB"
              for k, v in streams.items() if v["messages"]))
    dec = result["decisions"]
    d, r = dec["decision"], dec["resume"]
    print(f"\ndecisions: {dec['cycles_succeeded']}/{dec['cycles']} cycles lifetimes of "
          f"{dec['rounds']} works ({dec['cycle_clients']} at a time) in {dec['seconds']}s, "
          f"{dec['signalled']} waiting lifetimes signalled at {dec['signal_rate']}/s meanwhile")
    print(f"  plan decision (work finished -> next work dispatched): n {d.get('n')}, p50 "
          f"{d.get('p50_ms')} ms, p99 {d.get('p99_ms')} ms, max {d.get('max_ms')} ms; "
          f"target p99 <= {TARGET_DECISION_P99_MS:g} ms: "
          f"{'met' if d and d['p99_ms'] <= TARGET_DECISION_P99_MS else 'NOT met'}")
    print(f"  its parts, median ms: {dec['plan_stages_ms']}")
    print(f"  resume (signal POST -> apply dispatched): n {r.get('n')}, p50 {r.get('p50_ms')} "
          f"ms, p99 {r.get('p99_ms')} ms; errors {dec['cycle_errors']} {dec['signal_errors']}")
    rs = result["restart"]
    print(f"\nrestart: stopped in {rs['stop_s']}s, servers up in {rs['servers_s']}s, stack "
          f"ready {rs['ready_s']}s after the start; all {rs['lifetimes']} lifetimes readable and "
          f"waiting {rs['recover_s']}s after ready ({rs['not_waiting']} not)")
    print(f"  all signalled in {rs['signalled_s']}s, all finished {rs['finish_s']}s after the "
          f"first signal: {rs['finished_statuses']} ({rs['signal_errors'] or 'no errors'})")
    print(f"signal timers the state store holds: {wait['jetstream']['timers_held']} while "
          f"{n} waited, {dec['timers_held']} once {dec['signalled']} of them were signalled")
    return {"lifetimes": n, "bytes_per_lifetime": mem, "bytes_per_lifetime_total": total,
            "jetstream_bytes_per_lifetime": round(js / max(n, 1)),
            "all_waiting": wait["statuses"].get(f"waiting {SIGNAL}", 0) == n,
            "inflight_calls_while_waiting": wait["inflight_calls"],
            "decision_n": d.get("n"), "decision_p50_ms": d.get("p50_ms"),
            "decision_p99_ms": d.get("p99_ms"), "resume_p50_ms": r.get("p50_ms"),
            "resume_p99_ms": r.get("p99_ms"), "restart_ready_s": rs["ready_s"],
            "recover_s": rs["recover_s"], "resumed": rs["lifetimes"],
            "finish_all_s": rs["finish_s"],
            "succeeded": rs["finished_statuses"].get("succeeded", 0),
            "total_s": result["total_s"]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--lifetimes", type=int, default=10000, help="approval lifetimes that wait")
    p.add_argument("--clients", type=int, default=32, help="HTTP clients starting, reading "
                   "and signalling them")
    p.add_argument("--cycles", type=int, default=300, help="cycles lifetimes timed")
    p.add_argument("--rounds", type=int, default=5, help="works per cycles lifetime")
    p.add_argument("--cycle-clients", type=int, default=8,
                   help="cycles lifetimes at a time (each waits for its run to finish)")
    p.add_argument("--signal-live", type=int, default=500,
                   help="waiting lifetimes signalled while the cycles run")
    p.add_argument("--signal-rate", type=float, default=50.0, help="their signals per second")
    p.add_argument("--warmup", type=int, default=10, help="cycles lifetimes before measuring")
    p.add_argument("--settle", type=float, default=900.0,
                   help="seconds to wait for every lifetime to wait (or finish)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--hosts-per-node", type=int, default=2)
    p.add_argument("--log-level", default="WARNING", help="NALAR_LOG_LEVEL of the services")
    p.add_argument("--json", type=Path, default=RESULTS / "lifetimes.json")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {**run_header("bench/lifetimes.py", argv),
                              "nodes": args.nodes, "hosts_per_node": args.hosts_per_node}
    started = time.perf_counter()
    with started_stack(APP, nodes=args.nodes, hosts_per_node=args.hosts_per_node,
                       log_level=args.log_level) as stack:
        try:
            asyncio.run(bench(stack, args, result))
        except BaseException:
            print(f"nalar up's log ends:\n{stack.up_log.read_text(errors='replace')[-4000:]}")
            raise
    result["total_s"] = round(time.perf_counter() - started, 1)
    summary = report(result)
    result["summary"] = summary
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
