"""Financial analyst under skewed load, policies on vs off (issue 5): one run of the example
app on a two-node cluster whose nodes are not alike, under bursty load, once with the global
controller's policies off and once with the defaults on, side by side.

    make bench-skewed        # = .venv/bin/python bench/skewed_analyst.py (~5.5 min)
    .venv/bin/python bench/skewed_analyst.py --quick      # off, on once each, shorter (~1.5 min)
    .venv/bin/python bench/skewed_analyst.py --order off,on --measure-s 30

Per system (a fresh stack each time, same parameters, same arrival schedule):

- nats-server (JetStream) and valkey-server in a temp dir (`nalar_common.servers`), then each
  service as its own process (`tests/e2e_stack.start_services`): a global controller, a
  gateway, and two nodes `n1`, `n2`, each with one local controller and one agent host that
  runs every agent of `examples/financial_analyst` (and the workflow drivers);
- the skew: n2's simulated engine runs `--slow-scale` / `--fast-scale` times slower than n1's
  (`NALAR_LLM_TIME_SCALE` 1.0 vs 0.25 by default: a slower GPU on n2), and the load comes in
  bursts: Poisson arrivals whose rate alternates between `--high-rate` for `--burst-s` and
  `--low-rate` for `--calm-s`; a session gets a follow-up run with probability
  `--followup-p`, `--think-s` (exponential mean) after its previous *arrival* (so the
  schedule is the same for both systems: open loop);
- policies ON: `NALAR_GC_POLICIES` unset (LeastLoadedRouting, SessionAffinity,
  HeadOfLineMigration, SessionPriority); OFF: `NALAR_GC_POLICIES=""` (the global controller
  runs no policy; callers split calls between nodes by static capacity and each local
  controller still joins the shortest queue within its node);
- every arrival is one task: `POST /v1/workflows/financial_analysis/runs?wait=...` with the
  session id; latency = from the scheduled arrival to the response (a run still going when
  the wait ends is polled); arrivals in the first `--warmup-s` are not counted;
- meanwhile: every local controller's telemetry (`nalar.tel.<node>`: queue lengths, its
  `migrated`/`stolen`/`forwarded` counters), and `GET /v1/cluster` twice a second (the
  snapshot's routes and migrations); afterwards `GET /v1/runs/{id}/futures` of every counted
  run gives each call's executor, hence where the calls ran.

Prints a markdown table and writes bench/results/skewed_analyst.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nalar_common.envelope import Envelope
from nalar_common.subjects import Names

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from e2e_stack import Services, start_services  # noqa: E402
from paperbench.loadgen import poisson  # noqa: E402
from paperbench.stats import summary as lat_summary  # noqa: E402
from paperbench.systems import start_servers  # noqa: E402
from procstat import CLK_TCK, cpu_seconds  # noqa: E402

APP = ROOT / "examples" / "financial_analyst"
OUT = ROOT / "bench" / "results"
WORKFLOW = "financial_analysis"
NODES = ("n1", "n2")
LLM_AGENTS = ("StockAgent", "BondAgent", "MarketResearchAgent", "NewsAgent", "SummarizerAgent")
TICKERS = ("NVDA", "AAPL", "MSFT", "AMZN", "GOOG", "TSLA", "JPM", "XOM", "KO", "PFE")
QUESTIONS = ("Should I buy?", "Is it overvalued?", "What are the main risks?",
             "How does it compare to its sector?", "Is the dividend safe?")


# -- the arrival schedule ----------------------------------------------------------------------
@dataclass
class Arrival:
    t: float  # seconds after the start of the load
    session: str
    ticker: str
    question: str
    turn: int  # 0: a new session, 1..: follow-ups
    burst: bool  # arrived during a high-rate phase


def rate_at(t: float, args: argparse.Namespace) -> float:
    period = args.burst_s + args.calm_s
    return float(args.high_rate if t % period < args.burst_s else args.low_rate)


def schedule(args: argparse.Namespace) -> list[Arrival]:
    """Poisson arrivals of new sessions at the phase's rate (thinning), each followed by
    follow-ups with probability `followup_p`, think time after the previous arrival."""
    rng = random.Random(args.seed)
    end = args.warmup_s + args.measure_s
    peak = max(args.high_rate, args.low_rate)
    out: list[Arrival] = []
    n = 0
    for t in poisson(rng, peak, 0.0, end):
        if rng.random() * peak > rate_at(t, args):
            continue
        session, ticker = f"s{n:05d}", rng.choice(TICKERS)
        n += 1
        at, turn = t, 0
        while at < end:
            out.append(Arrival(round(at, 4), session, ticker, rng.choice(QUESTIONS), turn,
                               rate_at(at, args) == args.high_rate))
            if rng.random() >= args.followup_p:
                break
            at += rng.expovariate(1.0 / args.think_s)
            turn += 1
    out.sort(key=lambda a: a.t)
    return out


# -- processes ---------------------------------------------------------------------------------
def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes), from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / CLK_TCK


@dataclass
class Stack:
    svc: Services
    nats_url: str
    pids: dict[str, int]


@contextlib.contextmanager
def started_stack(system: str, args: argparse.Namespace, tmp: Path) -> Iterator[Stack]:
    """Servers and services for one system, stopped (services first) on the way out."""
    with contextlib.ExitStack() as cleanup:
        nats_srv, valkey = start_servers(tmp, cleanup)
        extra = {"NALAR_LOG_LEVEL": args.log_level}
        if system == "off":
            extra["NALAR_GC_POLICIES"] = ""  # the global controller runs no policy
        services: list[tuple[str, str, dict[str, str]]] = [
            ("gc", "nalar_global_controller", {})]
        for node, scale in zip(NODES, (args.fast_scale, args.slow_scale), strict=True):
            services.append((f"lc-{node}", "nalar_local_controller", {"NALAR_NODE_NAME": node}))
            services.append((f"host-{node}", "nalar_agent_host", {
                "NALAR_NODE_NAME": node, "NALAR_AGENT_HOST_HOST_ID": f"{node}-h1",
                "NALAR_LLM_TIME_SCALE": str(scale)}))
        services.append(("gateway", "nalar_gateway", {}))
        svc = start_services(APP, nats_srv.url, valkey.url, tmp / "logs", services,
                             extra_env=extra)
        cleanup.callback(svc.stop)
        pids = {name: p.pid for name, p in svc.procs.items()}
        pids.update({"nats-server": nats_srv.pid, "valkey-server": valkey.pid,
                     "loadgen": os.getpid()})
        yield Stack(svc, nats_srv.url, pids)


def wait_ready(stack: Stack, system: str) -> None:
    svc = stack.svc

    def ready() -> bool:
        r = httpx.get(f"{svc.url}/readyz", timeout=2)
        if r.status_code != 200 or sorted(r.json()["nodes"]) != list(NODES):
            return False
        c = httpx.get(f"{svc.url}/v1/cluster", timeout=2).json()
        if len(c["instances"]) < 14:  # 6 agents + the drivers, on each node
            return False
        if system == "on":  # the first snapshot with routes for every agent
            return len((c.get("policy") or {}).get("routes") or {}) >= 7
        return True

    svc.wait_until(ready, timeout=90, what="the stack")


# -- one system --------------------------------------------------------------------------------
@dataclass
class RunRecord:
    arrival: Arrival
    measured: bool
    run_id: str = ""
    status: str = "not sent"
    latency_s: float = math.nan
    error: str = ""


@dataclass
class Observed:
    """What the bench watched while the load ran."""

    queue: dict[str, list[int]] = field(default_factory=lambda: {n: [] for n in NODES})
    inflight: dict[str, list[int]] = field(default_factory=lambda: {n: [] for n in NODES})
    agent_queue: dict[str, dict[str, list[int]]] = field(
        default_factory=lambda: {n: {} for n in NODES})
    stats_start: dict[str, dict[str, int]] = field(default_factory=dict)
    stats_end: dict[str, dict[str, int]] = field(default_factory=dict)
    migrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    route_share_n1: dict[str, list[float]] = field(default_factory=dict)
    phase: str = "warmup"  # then "measuring" (arrivals counted), then "drain"

    @property
    def measuring(self) -> bool:
        return self.phase == "measuring"


async def watch_telemetry(nats_url: str, prefix: str, obs: Observed,
                          stop: asyncio.Event) -> None:
    nc = await nats.connect(nats_url, name="bench-skewed")

    async def on_msg(msg: Any) -> None:
        body = Envelope.decode(msg.data).body
        node = str(body.get("node"))
        if node not in NODES:
            return
        stats = {k: int(v) for k, v in (body.get("stats") or {}).items()}
        if obs.phase == "warmup":
            obs.stats_start[node] = stats  # the last report before counting starts
        if obs.measuring:
            rows = (body.get("instances") or {}).values()
            obs.queue[node].append(sum(int(r.get("queue", 0)) for r in rows))
            obs.inflight[node].append(sum(int(r.get("inflight", 0)) for r in rows))
            for r in rows:
                obs.agent_queue[node].setdefault(str(r.get("agent")), []).append(
                    int(r.get("queue", 0)))
        obs.stats_end[node] = stats

    try:
        await nc.subscribe(Names(prefix).all_telemetry, cb=on_msg)
        await stop.wait()
    finally:
        await nc.close()


async def watch_policy(http: httpx.AsyncClient, obs: Observed, stop: asyncio.Event) -> None:
    """The snapshot twice a second: one-shot migrations stay in it for 3 s, so none is
    missed; the routes' share of n1 per agent while counting."""
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError, ValueError):
            policy = (await http.get("/v1/cluster", timeout=5)).json().get("policy") or {}
            for m in policy.get("migrations") or []:
                if obs.phase != "warmup":
                    obs.migrations.setdefault(str(m.get("id")), m)
            if obs.measuring:
                for agent, per_node in (policy.get("routes") or {}).items():
                    total = sum(float(w) for w in per_node.values())
                    if total > 0:
                        obs.route_share_n1.setdefault(agent, []).append(
                            float(per_node.get("n1", 0.0)) / total)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def one_run(http: httpx.AsyncClient, rec: RunRecord, t0: float, wait_s: float,
                  deadline: float) -> None:
    a = rec.arrival
    loop = asyncio.get_running_loop()
    body = {"input": {"ticker": a.ticker, "question": a.question}, "session_id": a.session}
    try:
        r = await http.post(f"/v1/workflows/{WORKFLOW}/runs", params={"wait": wait_s},
                            json=body, timeout=wait_s + 30)
        view = r.json()
        if r.status_code not in (200, 202):
            rec.status, rec.error = "rejected", f"HTTP {r.status_code}: {r.text[:200]}"
            return
        rec.run_id = str(view["run_id"])
        while view.get("status") not in ("succeeded", "failed", "cancelled"):
            if loop.time() > deadline:
                rec.status = "unfinished"
                return
            await asyncio.sleep(0.2)
            view = (await http.get(f"/v1/runs/{rec.run_id}", timeout=30)).json()
        rec.latency_s = loop.time() - (t0 + a.t)
        rec.status = str(view["status"])
        if rec.status != "succeeded":
            rec.error = json.dumps(view.get("error"))[:300]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        rec.status, rec.error = "error", f"{type(exc).__name__}: {exc}"[:300]


async def placements(http: httpx.AsyncClient, runs: list[RunRecord],
                     host_node: dict[str, str]) -> dict[str, dict[str, int]]:
    """Calls per agent per node (the executor's host) over the given runs."""
    counts: dict[str, dict[str, int]] = {}
    sem = asyncio.Semaphore(8)

    async def one(run_id: str) -> None:
        async with sem:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                rows = (await http.get(f"/v1/runs/{run_id}/futures", timeout=30)).json()
                for row in rows.get("futures", []):
                    executor = str(row.get("executor") or "")
                    node = host_node.get(executor.split(".", 1)[0], "?")
                    per = counts.setdefault(str(row.get("agent")), {})
                    per[node] = per.get(node, 0) + 1

    await asyncio.gather(*(one(r.run_id) for r in runs if r.run_id))
    return counts


async def drive(stack: Stack, system: str, arrivals: list[Arrival],
                args: argparse.Namespace) -> dict[str, Any]:
    svc = stack.svc
    obs = Observed()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=svc.url, limits=limits, trust_env=False) as http:
        watchers = [asyncio.create_task(watch_telemetry(stack.nats_url, svc.prefix, obs, stop)),
                    asyncio.create_task(watch_policy(http, obs, stop))]
        await asyncio.sleep(0.5)  # the telemetry subscription is in place
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2
        end = args.warmup_s + args.measure_s
        deadline = t0 + end + args.drain_s
        records = [RunRecord(a, args.warmup_s <= a.t < end) for a in arrivals]
        tasks: list[asyncio.Task[None]] = []
        cpu0: dict[str, float] = {}
        busy0 = wall0 = 0.0
        for rec in records:
            if not obs.measuring and rec.arrival.t >= args.warmup_s:
                await asyncio.sleep(max(0.0, t0 + args.warmup_s - loop.time()))
                obs.phase = "measuring"
                cpu0 = {k: cpu_seconds(p) for k, p in stack.pids.items()}
                busy0, wall0 = machine_busy_seconds(), time.perf_counter()
            await asyncio.sleep(max(0.0, t0 + rec.arrival.t - loop.time()))
            tasks.append(asyncio.create_task(one_run(http, rec, t0, args.wait_s, deadline)))
        await asyncio.sleep(max(0.0, t0 + end - loop.time()))
        obs.phase = "drain"
        elapsed = time.perf_counter() - wall0
        cores = {k: round((cpu_seconds(p) - cpu0.get(k, 0.0)) / elapsed, 3)
                 for k, p in stack.pids.items()}
        machine = (machine_busy_seconds() - busy0) / elapsed
        remaining = deadline - loop.time()
        phases = {"load_s": round(loop.time() - t0, 1)}
        mark = loop.time()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(1.0, remaining + 5))
            for task in pending:
                task.cancel()
        phases["drain_s"] = round(loop.time() - mark, 1)
        await asyncio.sleep(0.6)  # the last telemetry and snapshot after the drain
        stop.set()
        await asyncio.gather(*watchers, return_exceptions=True)
        for rec in records:
            if rec.status == "not sent" and rec.run_id:
                rec.status = "unfinished"
        cluster = (await http.get("/v1/cluster", timeout=10)).json()
        host_node = {str(i["host"]): str(i["node"]) for i in cluster["instances"]}
        measured = [r for r in records if r.measured]
        mark = loop.time()
        where = await placements(http, [r for r in measured if r.status == "succeeded"],
                                 host_node)
        policy = (await http.get("/v1/policy", timeout=10)).json()
        phases["placements_s"] = round(loop.time() - mark, 1)
    return {**summarize(system, records, obs, where, policy, cores, machine),
            "phases": phases}


def summarize(system: str, records: list[RunRecord], obs: Observed,
              where: dict[str, dict[str, int]], policy: dict[str, Any],
              cores: dict[str, float], machine: float) -> dict[str, Any]:
    measured = [r for r in records if r.measured]
    ok = [r.latency_s for r in measured if r.status == "succeeded"]
    burst = [r.latency_s for r in measured if r.status == "succeeded" and r.arrival.burst]
    calm = [r.latency_s for r in measured if r.status == "succeeded" and not r.arrival.burst]
    llm = {n: sum(where.get(a, {}).get(n, 0) for a in LLM_AGENTS) for n in NODES}
    delta = {n: {k: v - obs.stats_start.get(n, {}).get(k, 0)
                 for k, v in obs.stats_end.get(n, {}).items()} for n in NODES}
    actions = {k: sum(delta[n].get(k, 0) for n in NODES)
               for k in ("migrated", "stolen", "forwarded", "lease_transfers")}
    snap = policy.get("snapshot") or {}
    errors: dict[str, int] = {}
    for r in measured:
        if r.status != "succeeded":
            key = f"{r.status}: {r.error[:120]}"
            errors[key] = errors.get(key, 0) + 1
    ours = sum(cores.values())
    return {
        "system": system,
        "_latencies": ok,
        "runs": len(measured), "completed": len(ok),
        "failed": len(measured) - len(ok),
        "errors": errors,
        "latency": lat_summary(ok),
        "latency_burst_arrivals": lat_summary(burst),
        "latency_calm_arrivals": lat_summary(calm),
        "runs_incl_warmup": len(records),
        "completed_incl_warmup": sum(1 for r in records if r.status == "succeeded"),
        "calls_per_node": where,
        "llm_calls_per_node": llm,
        "llm_share_n2": round(llm["n2"] / max(1, sum(llm.values())), 3),
        "summarizer_per_node": {n: where.get("SummarizerAgent", {}).get(n, 0) for n in NODES},
        "queued_mean": {n: round(sum(v) / len(v), 2) if v else 0.0
                        for n, v in obs.queue.items()},
        "queued_max": {n: max(v) if v else 0 for n, v in obs.queue.items()},
        "inflight_mean": {n: round(sum(v) / len(v), 2) if v else 0.0
                          for n, v in obs.inflight.items()},
        "queued_mean_by_agent": {n: {a: round(sum(v) / len(v), 2) for a, v in sorted(
            per.items()) if v} for n, per in obs.agent_queue.items()},
        "lc_stats_delta": delta,
        "actions": actions,
        "gc_migrations": len(obs.migrations),
        "gc_migrations_by_agent": _count(m.get("agent") for m in obs.migrations.values()),
        "gc_migrations_cross_node": sum(
            1 for m in obs.migrations.values()
            if str(m.get("src", "")).split("-", 1)[0] != str(m.get("dst", "")).split("-", 1)[0]),
        "route_share_n1_mean": {a: round(sum(v) / len(v), 3)
                                for a, v in sorted(obs.route_share_n1.items()) if v},
        "policies": snap.get("policies") or policy.get("policies") or [],
        "cpu_cores": dict(sorted(cores.items(), key=lambda kv: -kv[1])),
        "cpu_cores_ours": round(ours, 2),
        "cpu_cores_machine": round(machine, 2),
        "cpu_cores_others": round(max(0.0, machine - ours), 2),
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[str(x)] = out.get(str(x), 0) + 1
    return out


def run_system(system: str, arrivals: list[Arrival], args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"nalar-skewed-{system}-") as tmp_name:
        tmp = Path(tmp_name)
        with started_stack(system, args, tmp) as stack:
            wait_ready(stack, system)
            ready_s = time.perf_counter() - started
            result = asyncio.run(drive(stack, system, arrivals, args))
            if args.keep_logs:
                keep = ROOT / "bench" / "out" / "skewed_logs" / f"{system}-{int(time.time())}"
                keep.mkdir(parents=True, exist_ok=True)
                for f in (tmp / "logs").iterdir():
                    (keep / f.name).write_bytes(f.read_bytes())
            stopping = time.perf_counter()
    result["ready_s"] = round(ready_s, 1)
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["phases"]["stop_s"] = round(time.perf_counter() - stopping, 1)
    return result


# -- report ------------------------------------------------------------------------------------
def pooled(results: list[dict[str, Any]], arrivals_latency: dict[int, list[float]],
           system: str) -> dict[str, Any]:
    mine = [r for r in results if r["system"] == system]
    lat = [x for i, r in enumerate(results) if r["system"] == system
           for x in arrivals_latency[i]]
    llm = {n: sum(r["llm_calls_per_node"][n] for r in mine) for n in NODES}
    return {"system": system, "repetitions": len(mine),
            "runs": sum(r["runs"] for r in mine), "completed": sum(r["completed"] for r in mine),
            "failed": sum(r["failed"] for r in mine), "latency": lat_summary(lat),
            "llm_calls_per_node": llm,
            "llm_share_n2": round(llm["n2"] / max(1, sum(llm.values())), 3)}


def fmt(x: float) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else f"{x:.2f}"


def table(results: list[dict[str, Any]], pools: dict[str, dict[str, Any]]) -> str:
    head = ("| system | runs | completed | failed | avg s | p50 s | p95 s | p99 s "
            "| LLM calls n1 / n2 (n2 share) | summarizer n1 / n2 | queued mean n1 / n2 "
            "| GC migrations | LC migrated / stolen / forwarded |")
    lines = [head, "|" + "---|" * 13]
    seen: dict[str, int] = {}
    for r in results:
        seen[r["system"]] = seen.get(r["system"], 0) + 1
        lat, llm, a = r["latency"], r["llm_calls_per_node"], r["actions"]
        lines.append(
            f"| {r['system'].upper()} #{seen[r['system']]} | {r['runs']} | {r['completed']} "
            f"| {r['failed']} | {fmt(lat['avg_s'])} | {fmt(lat['p50_s'])} "
            f"| {fmt(lat['p95_s'])} | {fmt(lat['p99_s'])} "
            f"| {llm['n1']} / {llm['n2']} ({r['llm_share_n2']:.0%}) "
            f"| {r['summarizer_per_node']['n1']} / {r['summarizer_per_node']['n2']} "
            f"| {r['queued_mean']['n1']:.1f} / {r['queued_mean']['n2']:.1f} "
            f"| {r['gc_migrations']} | {a['migrated']} / {a['stolen']} / {a['forwarded']} |")
    for system in ("off", "on"):
        p = pools.get(system)
        if not p or p["repetitions"] < 2:
            continue
        lat, llm = p["latency"], p["llm_calls_per_node"]
        lines.append(
            f"| **{system.upper()} pooled** | {p['runs']} | {p['completed']} | {p['failed']} "
            f"| {fmt(lat['avg_s'])} | {fmt(lat['p50_s'])} | {fmt(lat['p95_s'])} "
            f"| {fmt(lat['p99_s'])} | {llm['n1']} / {llm['n2']} ({p['llm_share_n2']:.0%}) "
            "| | | | |")
    return "\n".join(lines)


def ratios(pools: dict[str, dict[str, Any]]) -> dict[str, float]:
    if "on" not in pools or "off" not in pools:
        return {}
    on, off = pools["on"]["latency"], pools["off"]["latency"]
    return {k: round(on[f"{k}_s"] / off[f"{k}_s"], 3) for k in ("avg", "p50", "p95", "p99")
            if off[f"{k}_s"] and not math.isnan(off[f"{k}_s"])}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="off, on once each with a shorter window (~1.5 min)")
    p.add_argument("--order", default=None,
                   help="systems in turn, comma separated (default off,on,off,on; "
                        "--quick: off,on)")
    p.add_argument("--warmup-s", type=float, default=None, help="not counted (default 10; 6)")
    p.add_argument("--measure-s", type=float, default=None, help="counted (default 60; 30)")
    p.add_argument("--drain-s", type=float, default=45.0,
                   help="after the last arrival, the most a run may still take")
    p.add_argument("--high-rate", type=float, default=6.0, help="new sessions/s in a burst")
    p.add_argument("--low-rate", type=float, default=1.0, help="new sessions/s between bursts")
    p.add_argument("--burst-s", type=float, default=5.0)
    p.add_argument("--calm-s", type=float, default=7.0)
    p.add_argument("--followup-p", type=float, default=0.3,
                   help="probability of one more run of the same session")
    p.add_argument("--think-s", type=float, default=4.0,
                   help="mean think time before a follow-up (after the previous arrival)")
    p.add_argument("--fast-scale", type=float, default=0.25, help="NALAR_LLM_TIME_SCALE on n1")
    p.add_argument("--slow-scale", type=float, default=1.0, help="NALAR_LLM_TIME_SCALE on n2")
    p.add_argument("--wait-s", type=float, default=120.0, help="?wait= of each POST")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--log-level", default="WARNING", help="NALAR_LOG_LEVEL of the services")
    p.add_argument("--keep-logs", action="store_true",
                   help="copy the services' logs to bench/out/skewed_logs/")
    p.add_argument("--json", type=Path, default=OUT / "skewed_analyst.json")
    args = p.parse_args(argv)
    args.order = (args.order or ("off,on" if args.quick else "off,on,off,on")).split(",")
    if any(s not in ("on", "off") for s in args.order):
        p.error("--order takes on and off")
    if args.warmup_s is None:
        args.warmup_s = 6.0 if args.quick else 10.0
    if args.measure_s is None:
        args.measure_s = 30.0 if args.quick else 60.0
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.environ.pop("NALAR_GC_POLICIES", None)  # ON means the built-in defaults
    arrivals = schedule(args)
    counted = [a for a in arrivals if a.t >= args.warmup_s]
    print(f"schedule: {len(arrivals)} runs ({len(counted)} counted, "
          f"{sum(a.burst for a in counted)} in bursts, "
          f"{sum(a.turn > 0 for a in counted)} follow-ups) over "
          f"{args.warmup_s + args.measure_s:.0f} s; systems {','.join(args.order)}", flush=True)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    latencies: dict[int, list[float]] = {}
    for system in args.order:
        r = run_system(system, arrivals, args)
        latencies[len(results)] = r.pop("_latencies", [])
        results.append(r)
        lat = r["latency"]
        print(f"{system}: {r['completed']}/{r['runs']} ok, p50 {fmt(lat['p50_s'])} s, "
              f"p95 {fmt(lat['p95_s'])} s, p99 {fmt(lat['p99_s'])} s, n2 share of LLM calls "
              f"{r['llm_share_n2']:.0%}, GC migrations {r['gc_migrations']}, cpu machine "
              f"{r['cpu_cores_machine']:.2f} (others {r['cpu_cores_others']:.2f}), "
              f"{r['total_s']:.0f} s", flush=True)
    pools = {s: pooled(results, latencies, s) for s in ("off", "on") if s in args.order}
    rat = ratios(pools)
    out: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/skewed_analyst.py", *argv]),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "schedule": {"runs": len(arrivals), "counted": len(counted),
                     "in_bursts": sum(a.burst for a in counted),
                     "followups": sum(a.turn > 0 for a in counted),
                     "sessions": len({a.session for a in arrivals})},
        "results": results, "pooled": pools, "ratio_on_off": rat,
        "total_s": round(time.perf_counter() - started, 1),
    }
    print()
    print(table(results, pools))
    if rat:
        print("\nON / OFF (pooled): " + ", ".join(f"{k} {v:.2f}" for k, v in rat.items()))
    others = max(r["cpu_cores_others"] for r in results)
    if others >= 0.2:
        print(f"note: processes not started by this benchmark kept up to {others:.2f} cores "
              "busy while it measured: latencies are skewed by that")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, default=_json_default) + "\n")
    print(f"\nwrote {args.json} ({out['total_s']:.0f} s in all)")
    return 0


def _json_default(x: Any) -> Any:
    if isinstance(x, Arrival):
        return asdict(x)
    raise TypeError(type(x).__name__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
