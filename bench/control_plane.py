"""Control-plane scale benchmark (issue 5; the Nalar paper's Fig. 10 / Table 4): how long one
round of the active global controller takes against outstanding futures and emulated nodes,
and how long a local controller takes to route one call.

    make bench-control-plane          # = .venv/bin/python bench/control_plane.py  (~30 s)
    .venv/bin/python bench/control_plane.py --quick          # a subset (~10 s)
    .venv/bin/python bench/control_plane.py --profile        # + cProfile of the largest loop
    .venv/bin/python bench/control_plane.py --json /tmp/x.json   # results elsewhere
    .venv/bin/python bench/control_plane.py --gc-off         # cyclic GC off in the timed loops

Everything is the services' own code, run in one process without a bus:

1. Global controller loop. Per emulated node a real `LocalController` (its constructor with a
   stand-in bus: nothing is sent) holds real `InstanceQueue`s (4 agent types x 2 instances,
   concurrency 4) filled with real `Held` calls: sessions drawn from a Zipf distribution, one
   in ten of them with a priority, placed by the controller's own `_choose` (join-shortest-
   queue with KV affinity); up to `concurrency` calls per instance are running (`inflight`,
   dispatched a while ago), and 128 earlier calls per instance went through `finished()`, so
   `recent` sessions, KV context and `service_s` are real. Its `telemetry()` body goes through
   `Telemetry.encode()`, exactly what the node publishes. The local
   controllers are then dropped (they live in other processes in a real cluster) and a real
   `GlobalController` (`__new__`, as its unit tests build one) with a real `ClusterView` of
   every instance runs one round per repetition, as its `tick` does: every node's message goes
   through its own `_on_telemetry` handler on a subject ending with the node's name
   (`nalar.tel.<node>`), which only keeps the raw bytes, the latest per node; then
   `_fold_telemetry()` decodes them ("decode": since the handler stopped decoding on arrival,
   decoding happens once per round for the latest message per node, not once per message),
   `state()` builds the cluster state (and finds nothing left to decode), `compute(state)`
   runs the policies and `_stamp_actions` (the service runs this in a thread,
   `asyncio.to_thread(self.compute, self.state())`; here it runs inline, so the time is the
   same CPU work without the hand-over), and `PolicySnapshot.encode()` makes what is written
   to KV. `state()`, each policy's `decide` and `_stamp_actions` are timed by wrapping them on
   the instance, so the split comes from the real `compute()`. The Rebalancer's cooldown is
   reset before each repetition, so it always does its full work (the worst case). Each
   repetition also counts the full (generation 2) collections of Python's cyclic garbage
   collector that ran within it: they cost a round tens of ms at the larger sizes (the
   collector is on in the services too); `--gc-off` switches it off for the timed loops.
2. Local routing decision: `_choose(held)` + `queue.push(held)` + `queue.pop()` of a local
   controller with 8 or 32 instance queues holding 1k or 16k queued calls, with no policy
   snapshot and with one that routes sessions, names their affinity, weights instances and
   raises priorities.

Prints markdown tables and writes bench/results/control_plane.json.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from nalar_common.authz import PolicyFile
from nalar_common.cluster import ClusterView, InstanceInfo, PolicySnapshot
from nalar_common.guardrails import GuardrailFile
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names
from nalar_global_controller.policies import Policy, Rebalancer, load_policies
from nalar_global_controller.service import GlobalController
from nalar_global_controller.settings import GlobalControllerSettings
from nalar_local_controller.queues import Held, InstanceQueue
from nalar_local_controller.service import LocalController
from nalar_local_controller.settings import LocalControllerSettings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
AGENTS = ("Planner", "Retriever", "Writer", "Critic")
AGENT_WEIGHTS = (0.4, 0.3, 0.2, 0.1)  # one type takes most calls, one idles (rebalancing)
CONCURRENCY = 4
FINISHED_PER_INSTANCE = 128  # calls that ran there before: `recent`, `context`, `service_s`
ZIPF_S = 1.1
SHARED_SESSIONS = 0.05  # share of calls from sessions active on several nodes
PRIORITY_EVERY = 10  # one session in ten asks for a priority
TARGET_LOOP_MS, PAPER_LOOP_MS = 250.0, 464.0
TARGET_DECISION_MS, PAPER_DECISION_MS = 0.1, 0.4
DEFAULT = "default"
WITH_REBALANCER = "default+Rebalancer"


# -- statistics ------------------------------------------------------------------------------
def pct(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); with 20 samples p99 is the largest."""
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run_sync(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that never suspends (the GC's telemetry handler) without a loop."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("the coroutine suspended")


# -- workload --------------------------------------------------------------------------------
class Sessions:
    """Session ids drawn from a Zipf distribution: a few sessions hold many calls."""

    def __init__(self, prefix: str, n: int, rng: random.Random) -> None:
        self.ids = [f"{prefix}{k}" for k in range(n)]
        self.cum = list(itertools.accumulate(1.0 / (k + 1) ** ZIPF_S for k in range(n)))
        self.rng = rng

    def draw(self, k: int) -> list[str]:
        return self.rng.choices(self.ids, cum_weights=self.cum, k=k)


def priority_of(session: str) -> int:
    """One session in ten asks for a priority (1..5), the same one every time."""
    h = zlib.crc32(session.encode())
    return 1 + h % 5 if h % PRIORITY_EVERY == 0 else 0


def make_held(n: int, session: str, agent: str, arrived: float) -> Held:
    p = priority_of(session)
    return Held(msgs=[], data=b"", headers={}, run=f"r{n // 16}", future=f"f{n}", agent=agent,
                session=session, priority=p, deps=[], arrived=arrived, base_priority=p)


def bare_lc(node: str, queues: dict[str, InstanceQueue]) -> LocalController:
    """A real local controller without a connection: its own constructor with a stand-in bus
    (names and settings only; nothing here sends), so it has every attribute the constructor
    sets, and a stand-in view holding the policy snapshot (like the unit tests' `_bare_lc`)."""
    bus = SimpleNamespace(names=Names(), settings=NatsSettings(), on_reconnect=lambda hook: None)
    lc = LocalController(cast(Any, bus), node, LocalControllerSettings(),
                         access=PolicyFile.off(), guardrails=GuardrailFile.off())
    lc.book.queues.update(queues)
    return lc


def engine_stats(rng: random.Random) -> dict[str, Any]:
    """What an agent host reports of its engine (`SimulatedEngine.stats()`)."""
    used = rng.randint(10_000, 200_000)
    return {"engine": "simulated", "running": rng.randint(0, 16), "waiting": rng.randint(0, 8),
            "kv_used_tokens": used, "kv_budget_tokens": 262_144, "kv_usage": used / 262_144,
            "prefill_tokens_per_s": 8000.0, "prefix_cache_queries": rng.randint(0, 10**5),
            "prefix_cache_hits": rng.randint(0, 10**5), "completed": rng.randint(0, 10**5)}


def node_queues(node: str, per_agent: int, rng: random.Random,
                now: float) -> dict[str, InstanceQueue]:
    queues = {}
    for h in range(per_agent):
        host = f"{node}-h{h + 1}"
        stats = engine_stats(rng)
        for agent in AGENTS:
            iid = f"{host}.{agent}"
            queues[iid] = InstanceQueue(InstanceInfo(
                instance=iid, host=host, node=node, agent=agent, concurrency=CONCURRENCY,
                pid=1000 + h, started_at=now - 3600, ts=now, engine=stats, slots_free=0,
                startup_s=2.0, max_instances=None))
    return queues


def fill_node(lc: LocalController, futures: int, local: Sessions, shared: Sessions,
              rng: random.Random, now: float, seq: itertools.count[int]) -> None:
    """`futures` outstanding calls: first what ran before (finished), then calls placed by
    the controller's own `_choose`, then up to `concurrency` of each queue start running."""
    for q in lc.book.queues.values():
        for s in local.draw(FINISHED_PER_INSTANCE):
            held = make_held(next(seq), s, q.info.agent, now)
            q.finished(held, rng.lognormvariate(-0.7, 0.6), rng.randint(100, 600),
                       rng.randint(200, 6000))
    n_shared = sum(1 for _ in range(futures) if rng.random() < SHARED_SESSIONS)
    sessions = local.draw(futures - n_shared) + shared.draw(n_shared)
    rng.shuffle(sessions)
    agents = rng.choices(AGENTS, weights=AGENT_WEIGHTS, k=futures)
    for s, agent in zip(sessions, agents, strict=True):
        held = make_held(next(seq), s, agent, now - rng.uniform(0.0, 20.0))
        queue = lc.dispatcher.choose(held)
        assert queue is not None
        queue.push(held)
        lc.book.held[held.key] = held
    for q in lc.book.queues.values():  # a queue runs as many calls as it has slots
        for _ in range(CONCURRENCY):
            running = q.pop()
            if running is None:
                break
            running.dispatch(f"{lc.node}:{running.seq}",
                             now - rng.uniform(0.0, 2.0 * q.service_s))
            q.inflight[running.key] = running
            q.dispatched += 1
    lc.stats["admitted"] = futures
    lc.stats["dispatched"] = lc.stats["completed"] = FINISHED_PER_INSTANCE * len(lc.book.queues)


@dataclass
class Cluster:
    """What the global controller receives: one telemetry message per node, and the view."""

    nodes: list[str]
    messages: list[bytes]
    instances: dict[str, InstanceInfo]
    telemetry_ms: list[float]  # each node's `LocalController.telemetry()`
    outstanding: int


def build_cluster(nodes: int, futures: int, seed: int) -> Cluster:
    rng = random.Random(seed)
    now = time.time()
    seq = itertools.count()
    per_node = futures // nodes
    shared = Sessions("g", max(64, futures // 64), rng)
    names: list[str] = []
    messages, instances, tel_ms, outstanding = [], {}, [], 0
    for n in range(nodes):
        node = f"n{n + 1}"
        lc = bare_lc(node, node_queues(node, 2, rng, now))
        local = Sessions(f"{node}-s", max(16, per_node // 4), rng)
        fill_node(lc, per_node + (futures % nodes if n == 0 else 0), local, shared, rng, now,
                  seq)
        outstanding += sum(q.queued + len(q.inflight) for q in lc.book.queues.values())
        t0 = time.perf_counter()
        body = lc.telemetry()
        tel_ms.append((time.perf_counter() - t0) * 1e3)
        names.append(node)
        messages.append(body.encode())
        for iid, q in lc.book.queues.items():
            instances[iid] = replace(q.info, ts=now, inflight=len(q.inflight))
    assert outstanding == futures, (outstanding, futures)
    return Cluster(names, messages, instances, tel_ms, outstanding)


# -- global controller loop ------------------------------------------------------------------
def policy_set(name: str) -> list[Policy]:
    policies: list[Policy] = list(load_policies(GlobalControllerSettings().policies))
    if name == WITH_REBALANCER:
        policies.append(Rebalancer())
    return policies


def bare_gc(policies: list[Policy], instances: dict[str, InstanceInfo],
            times: dict[str, float]) -> GlobalController:
    """A global controller without a bus, as its unit tests build one; `state()`, each
    policy's `decide` and `_stamp_actions` add their time to `times`."""
    gc_ = GlobalController.__new__(GlobalController)
    # the messages are built once and replayed: their `ts` must not go stale meanwhile
    gc_.settings = GlobalControllerSettings(controller_id="bench-gc", telemetry_stale_s=3600.0)
    gc_.policies = policies
    gc_.policy_names = [type(p).__name__ for p in policies]
    view = ClusterView.__new__(ClusterView)
    view.instances = dict(instances)
    view._ttl = 3600.0
    view.snapshot = None
    gc_.view = view
    gc_.telemetry = {}
    gc_._raw, gc_._unreadable = {}, []
    gc_._actions, gc_._action_seq = {}, 0

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    setattr(gc_, "state", timed("state", gc_.state))  # noqa: B010 (shadows the method)
    setattr(gc_, "_stamp_actions", timed("stamp", gc_._stamp_actions))  # noqa: B010
    for p in policies:
        setattr(p, "decide", timed("policy:" + type(p).__name__, p.decide))  # noqa: B010
    return gc_


def gc_loop(gc_: GlobalController, msgs: list[Any], times: dict[str, float]) -> bytes:
    """One round: every node's telemetry through the GC's handler (it keeps the raw bytes),
    `_fold_telemetry()` (decode), `state()`, `compute(state)`, `encode()`."""
    c0 = time.thread_time()
    t0 = time.perf_counter()
    for msg in msgs:
        run_sync(gc_._on_telemetry(msg))
    t1 = time.perf_counter()
    gc_._fold_telemetry()
    t2 = time.perf_counter()
    state = gc_.state()  # timed by its wrapper ("state"); nothing left to decode
    snap: PolicySnapshot = gc_.compute(state)
    t3 = time.perf_counter()
    payload = snap.encode()
    t4 = time.perf_counter()
    times["receive"], times["decode"], times["encode"] = t1 - t0, t2 - t1, t4 - t3
    times["compute"] = t3 - t2  # state() + policies + stamp
    times["loop"] = t4 - t0
    times["cpu"] = time.thread_time() - c0  # well under `loop`: another process had the core
    return payload


def bench_gc(cluster: Cluster, policies_name: str, reps: int, warmup: int = 1,
             profile: Path | None = None, cyclic_gc: bool = True) -> tuple[dict[str, Any], bytes]:
    """`reps` timed rounds; each sample also counts the full (generation 2) collections of
    Python's cyclic garbage collector that ran within it (`cyclic_gc=False`: it is off)."""
    times: dict[str, float] = {}
    policies = policy_set(policies_name)
    gc_ = bare_gc(policies, cluster.instances, times)
    names = Names()
    msgs = [SimpleNamespace(data=m, subject=names.telemetry(node))
            for node, m in zip(cluster.nodes, cluster.messages, strict=True)]
    samples: list[dict[str, float]] = []
    payload = b""
    snap_stats: dict[str, int] = {}
    if not cyclic_gc:
        gc.disable()
    for i in range(warmup + reps):
        for p in policies:
            if isinstance(p, Rebalancer):
                p._quiet_until = 0.0  # always the full decision
        times.clear()
        full0 = gc.get_stats()[2]["collections"]
        payload = gc_loop(gc_, cast(list[Any], msgs), times)
        times["full_gc"] = gc.get_stats()[2]["collections"] - full0
        if i >= warmup:
            samples.append(dict(times))
    gc.enable()
    if profile is not None:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            gc_loop(gc_, cast(list[Any], msgs), {})
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(30)
        buf.write("\n--- by own time ---\n")
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(20)
        profile.write_text(buf.getvalue())
    snap = PolicySnapshot.decode(payload)
    snap_stats = {"routes": len(snap.routes), "sessions": len(snap.sessions),
                  "affinity": len(snap.affinity), "priorities": len(snap.priorities),
                  "migrations": len(snap.migrations), "provisions": len(snap.provisions),
                  "releases": len(snap.releases)}

    def med_ms(key: str) -> float:
        return round(statistics.median(s.get(key, 0.0) for s in samples) * 1e3, 2)

    loops = [s["loop"] for s in samples]
    no_full = [s["loop"] for s in samples if not s["full_gc"]]
    # a repetition whose wall time exceeds its CPU time by a quarter: the machine was busy
    contended = sum(1 for s in samples if s["loop"] > 1.25 * s["cpu"] + 0.002)
    policy_keys = [k for k in samples[0] if k.startswith("policy:")]
    sizes = [len(m) for m in cluster.messages]
    return {
        "nodes": len(cluster.messages), "instances": len(cluster.instances),
        "futures": cluster.outstanding, "policies": policies_name, "reps": reps,
        "loop_p50_ms": round(pct(loops, 50) * 1e3, 2),
        "loop_p99_ms": round(pct(loops, 99) * 1e3, 2),
        "loop_max_ms": round(max(loops) * 1e3, 2),
        "loop_cpu_p50_ms": round(pct([s["cpu"] for s in samples], 50) * 1e3, 2),
        "cyclic_gc": cyclic_gc,
        "full_gc_reps": sum(1 for s in samples if s["full_gc"]),
        "loop_p50_without_full_gc_ms": round(pct(no_full, 50) * 1e3, 2) if no_full else None,
        "contended_reps": contended,
        "loops_ms": [round(x * 1e3, 2) for x in loops],
        "receive_ms": med_ms("receive"), "decode_ms": med_ms("decode"),
        "state_ms": med_ms("state"),
        "policies_ms": round(statistics.median(sum(s[k] for k in policy_keys)
                                               for s in samples) * 1e3, 2),
        "per_policy_ms": {k.split(":", 1)[1]: med_ms(k) for k in policy_keys},
        "stamp_ms": med_ms("stamp"), "compute_ms": med_ms("compute"),
        "encode_ms": med_ms("encode"),
        "telemetry_msg_bytes_median": int(statistics.median(sizes)),
        "telemetry_msg_bytes_max": max(sizes),
        "telemetry_bytes_total": sum(sizes),
        "snapshot_bytes": len(payload), "snapshot": snap_stats,
        "lc_telemetry_ms_median": round(statistics.median(cluster.telemetry_ms), 3),
        "lc_telemetry_ms_max": round(max(cluster.telemetry_ms), 3),
    }, payload


# -- local routing decision ------------------------------------------------------------------
def decision_snapshot(queues: dict[str, InstanceQueue], sessions: Sessions,
                      rng: random.Random) -> PolicySnapshot:
    """A snapshot as the default policies write it: weights for every instance (one weighted
    0), affinity for 2,000 sessions, a route for 50, priorities for one in ten."""
    snap = PolicySnapshot()
    by_agent: dict[str, list[str]] = {}
    for iid, q in queues.items():
        by_agent.setdefault(q.info.agent, []).append(iid)
    for agent, ids in by_agent.items():
        snap.instance_weights[agent] = {i: round(rng.uniform(0.05, 1.05), 3) for i in ids}
        snap.instance_weights[agent][ids[-1]] = 0.0
    for s in sessions.ids[:2000]:
        agent = rng.choice(AGENTS)
        snap.affinity.setdefault(s, {})[agent] = rng.choice(by_agent[agent])
        if priority_of(s):
            snap.priorities[s] = priority_of(s)
    for s in rng.sample(sessions.ids[:500], 50):
        agent = rng.choice(AGENTS)
        snap.sessions.setdefault(s, {})[agent] = rng.choice(by_agent[agent])
    return snap


def bench_decision(n_queues: int, queued: int, with_snapshot: bool, calls: int,
                   seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    now = time.time()
    seq = itertools.count()
    lc = bare_lc("n1", node_queues("n1", n_queues // len(AGENTS), rng, now))
    sessions = Sessions("s", 4000, rng)
    # every queue runs `concurrency` calls: fill so that `queued` calls wait
    fill_node(lc, queued + n_queues * CONCURRENCY, sessions, Sessions("g", 64, rng), rng, now,
              seq)
    if with_snapshot:
        lc.view.snapshot = decision_snapshot(lc.book.queues, sessions, rng)
    agents = rng.choices(AGENTS, weights=AGENT_WEIGHTS, k=calls + 1000)
    batch = [make_held(next(seq), s, a, now)
             for s, a in zip(sessions.draw(calls + 1000), agents, strict=True)]
    choose, clock = lc.dispatcher.choose, time.perf_counter_ns
    samples = []
    for held in batch:
        t0 = clock()
        q = choose(held)
        assert q is not None
        q.push(held)
        q.pop()
        samples.append(clock() - t0)
    samples = samples[1000:]  # warm-up
    still = sum(q.queued for q in lc.book.queues.values())
    return {"queues": n_queues, "queued": still, "snapshot": with_snapshot, "calls": calls,
            "p50_us": round(pct(samples, 50) / 1e3, 2),
            "p99_us": round(pct(samples, 99) / 1e3, 2),
            "mean_us": round(statistics.fmean(samples) / 1e3, 2)}


def timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(20000):
        t0 = clock()
        samples.append(clock() - t0)
    return float(statistics.median(samples))


# -- report ----------------------------------------------------------------------------------
def gc_table(rows: list[dict[str, Any]]) -> str:
    out = ["| nodes | instances | futures | policies | loop p50 ms | loop p99 ms | CPU p50 ms | "
           "full GC in | p50 w/o full GC | decode | state() | policies | encode | "
           "telemetry B/node | snapshot B | LC telemetry() ms |",
           "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        nofull = r["loop_p50_without_full_gc_ms"]
        out.append(f"| {r['nodes']} | {r['instances']} | {r['futures']:,} | {r['policies']} | "
                   f"**{r['loop_p50_ms']:.1f}** | {r['loop_p99_ms']:.1f} | "
                   f"{r['loop_cpu_p50_ms']:.1f} | {r['full_gc_reps']}/{r['reps']} | "
                   f"{'-' if nofull is None else f'{nofull:.1f}'} | "
                   f"{r['decode_ms']:.1f} | {r['state_ms']:.1f} | "
                   f"{r['policies_ms']:.1f} | "
                   f"{r['encode_ms']:.1f} | {r['telemetry_msg_bytes_median']:,} | "
                   f"{r['snapshot_bytes']:,} | {r['lc_telemetry_ms_median']:.2f} |")
    return "\n".join(out)


def policy_table(rows: list[dict[str, Any]]) -> str:
    names = list(rows[-1]["per_policy_ms"])
    out = ["| nodes | futures | policies | " + " | ".join(names) + " | stamp |",
           "|---:|---:|---|" + "---:|" * (len(names) + 1)]
    for r in rows:
        cells = [f"{r['per_policy_ms'][n]:.1f}" if n in r["per_policy_ms"] else "-"
                 for n in names]
        out.append(f"| {r['nodes']} | {r['futures']:,} | {r['policies']} | "
                   + " | ".join(cells) + f" | {r['stamp_ms']:.1f} |")
    return "\n".join(out)


def decision_table(rows: list[dict[str, Any]]) -> str:
    out = ["| instance queues | queued calls | policy snapshot | calls | p50 µs | p99 µs | "
           "mean µs |", "|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['queues']} | {r['queued']:,} | {'yes' if r['snapshot'] else 'no'} | "
                   f"{r['calls']:,} | **{r['p50_us']:.1f}** | {r['p99_us']:.1f} | "
                   f"{r['mean_us']:.1f} |")
    return "\n".join(out)


def targets(gc_rows: list[dict[str, Any]], dec_rows: list[dict[str, Any]]) -> dict[str, Any]:
    top = [r for r in gc_rows if r["nodes"] == max(x["nodes"] for x in gc_rows)
           and r["futures"] == max(x["futures"] for x in gc_rows)]
    loop_p50 = max(r["loop_p50_ms"] for r in top)
    loop_p99 = max(r["loop_p99_ms"] for r in top)
    dec_p50 = max(r["p50_us"] for r in dec_rows) / 1e3
    dec_p99 = max(r["p99_us"] for r in dec_rows) / 1e3
    return {
        "loop": {"at": f"{top[0]['futures']} futures, {top[0]['nodes']} nodes",
                 "target_ms": TARGET_LOOP_MS, "paper_ms": PAPER_LOOP_MS,
                 "worst_p50_ms": loop_p50, "worst_p99_ms": loop_p99,
                 "met_p50": loop_p50 <= TARGET_LOOP_MS, "met_p99": loop_p99 <= TARGET_LOOP_MS},
        "decision": {"target_ms": TARGET_DECISION_MS, "paper_ms": PAPER_DECISION_MS,
                     "worst_p50_ms": round(dec_p50, 4), "worst_p99_ms": round(dec_p99, 4),
                     "met_p50": dec_p50 <= TARGET_DECISION_MS,
                     "met_p99": dec_p99 <= TARGET_DECISION_MS},
    }


def target_table(t: dict[str, Any]) -> str:
    loop, dec = t["loop"], t["decision"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    return "\n".join([
        "| | target | paper | here p50 | here p99 | |",
        "|---|---:|---:|---:|---:|---|",
        f"| GC loop ({loop['at']}, worst policy set) | ≤ {loop['target_ms']:.0f} ms | "
        f"{loop['paper_ms']:.0f} ms | {loop['worst_p50_ms']:.1f} ms | "
        f"{loop['worst_p99_ms']:.1f} ms | p50 {mark(loop['met_p50'])}, "
        f"p99 {mark(loop['met_p99'])} |",
        f"| local decision (worst configuration) | ≤ {dec['target_ms']} ms | "
        f"{dec['paper_ms']} ms | {dec['worst_p50_ms']:.4f} ms | {dec['worst_p99_ms']:.4f} ms | "
        f"p50 {mark(dec['met_p50'])}, p99 {mark(dec['met_p99'])} |"])


def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    futures = [int(f) for f in args.futures.split(",")]
    nodes = [int(n) for n in args.nodes.split(",")]
    sets = [DEFAULT, WITH_REBALANCER]
    OUT.mkdir(parents=True, exist_ok=True)
    gc_rows: list[dict[str, Any]] = []
    print(f"global controller loop ({args.reps} repetitions after 1 warm-up):", flush=True)
    for n in nodes:
        for f in futures:
            t0 = time.monotonic()
            cluster = build_cluster(n, f, seed=args.seed)
            gc.collect()  # the local controllers' calls are gone: only the GC's data stays
            built = time.monotonic() - t0
            for name in sets:
                prof = None
                if args.profile and n == max(nodes) and f == max(futures) and \
                        name == WITH_REBALANCER:
                    prof = OUT / "control_plane_profile.txt"
                row, _ = bench_gc(cluster, name, args.reps, profile=prof,
                                  cyclic_gc=not args.gc_off)
                gc_rows.append(row)
                print(f"  nodes={n:3d} futures={f:7,d} {name:19s} loop p50 "
                      f"{row['loop_p50_ms']:7.1f} ms p99 {row['loop_p99_ms']:7.1f} ms "
                      f"cpu p50 {row['loop_cpu_p50_ms']:.1f} ms "
                      f"full GC in {row['full_gc_reps']}/{row['reps']} "
                      f"(decode {row['decode_ms']:.1f}, state {row['state_ms']:.1f}, "
                      f"policies {row['policies_ms']:.1f}, encode {row['encode_ms']:.1f}; "
                      f"built in {built:.1f} s)", flush=True)
            del cluster
            gc.collect()
    dec_rows: list[dict[str, Any]] = []
    print(f"local routing decision ({args.calls:,} calls each):", flush=True)
    for nq in (8, 32):
        for queued in (1000, 16000):
            for snap in (False, True):
                row = bench_decision(nq, queued, snap, args.calls, seed=args.seed)
                dec_rows.append(row)
                print(f"  queues={nq:2d} queued={queued:6,d} snapshot={snap!s:5} "
                      f"p50 {row['p50_us']:.2f} µs p99 {row['p99_us']:.2f} µs", flush=True)
                gc.collect()
    t = targets(gc_rows, dec_rows)
    result: dict[str, Any] = {
        "machine": machine(), "args": vars(args), "timer_overhead_ns": timer_overhead_ns(),
        "gc_loop": gc_rows, "local_decision": dec_rows, "targets": t,
        "wall_s": round(time.monotonic() - started, 1)}
    print()
    print("### Global controller loop\n")
    print(gc_table(gc_rows))
    print("\nPer policy, median ms:\n")
    print(policy_table(gc_rows))
    print("\n### Local routing decision\n")
    print(decision_table(dec_rows))
    print("\n### Targets\n")
    print(target_table(t))
    print(f"\nwhole run {result['wall_s']} s on {os.cpu_count()} CPUs; "
          f"timer overhead {result['timer_overhead_ns']:.0f} ns per sample")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--futures", default="1024,4096,16384,65536,131072")
    p.add_argument("--nodes", default="32,64")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--calls", type=int, default=20000, help="local decisions per config")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="1k and 131k futures on 64 nodes only, 10k decisions each")
    p.add_argument("--profile", action="store_true",
                   help="cProfile 3 loops of the largest configuration into "
                        "bench/results/control_plane_profile.txt")
    p.add_argument("--gc-off", action="store_true",
                   help="switch Python's cyclic garbage collector off during the timed loops "
                        "(to see its share; the services leave it on)")
    p.add_argument("--json", type=Path, default=OUT / "control_plane.json",
                   help="where the results go")
    a = p.parse_args()
    if a.quick:
        a.futures, a.nodes, a.calls = "1024,131072", "64", 10000
    res = main(a)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"wrote {a.json}")
    sys.exit(0)
