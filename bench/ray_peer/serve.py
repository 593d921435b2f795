"""The paper's three workloads (financial analyst, router, recursive SWE) on Ray Serve, with
the same simulated engine and the same work as the Nalar app in `bench/apps/paper/`
(prompts, tool delays and engine parameters come from its `simwork`).

    .venv-bench/bin/python bench/ray_peer/serve.py --workload fa --port 8200 --time-scale 0.25

Starts a local Ray instance, serves the workload's workflow over HTTP on 127.0.0.1:PORT like
Nalar's gateway (`POST /v1/workflows/{name}/runs`), prints READY once it answers, and shuts
Serve and Ray down on SIGTERM/SIGINT or when its parent process dies. `GET /v1/bench/engines`
gives every engine replica's load figures. Each replica that holds an engine is one "GPU";
replica counts are fixed (no Serve autoscaling). See README.md.
"""

# no `from __future__ import annotations`: FastAPI must see `Request` itself in the routes
import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nalar.engines import SimulatedEngine, SimulatedParams
from nalar.engines.base import Completion, LLMRequest
from nalar.retry import DEFAULT_RETRY
from nalar_common.errors import NalarError
from nalar_common.servers import die_with_parent
from ray import serve
from ray.serve.handle import DeploymentHandle

PAPER_APP = Path(__file__).resolve().parents[1] / "apps" / "paper"
sys.path.insert(0, str(PAPER_APP))
import simwork as w  # noqa: E402

WORKFLOWS = {"fa": "fa_query", "router": "route_query", "swe": "swe_item"}
_OPTS: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0}}


# -- engine replicas ------------------------------------------------------------------------
class EngineReplica:
    """A replica that owns one simulated engine (one GPU) and keeps its load figures in
    `<stats_dir>/<deployment>#<replica>.json`, rewritten after every engine call."""

    def __init__(self, workload: str, time_scale: float, seed: int, stats_dir: str) -> None:
        self.engine = SimulatedEngine(SimulatedParams(time_scale=time_scale, seed=seed,
                                                      **w.ENGINE[workload]))
        ctx = serve.get_replica_context()
        self.pool = ctx.deployment
        self.id = f"{ctx.deployment}#{ctx.replica_tag}"
        self.stats_path = Path(stats_dir) / f"{self.id}.json"
        self.publish()

    async def generate(self, prompt: str, max_tokens: int, session: str | None) -> Completion:
        try:
            return await self.engine.complete(LLMRequest(prompt=prompt, max_tokens=max_tokens,
                                                         session=session))
        finally:
            self.publish()

    def publish(self) -> None:
        """Write the engine's figures as of now (`running` > 0: busy_s still growing)."""
        s = self.engine.stats()
        row = {"id": self.id, "pool": self.pool, "busy_s": s["busy_s"], "seq_s": s["seq_s"],
               "completed": s["completed"], "prefix_cache_hits": s["prefix_cache_hits"],
               "prefix_cache_queries": s["prefix_cache_queries"], "running": s["running"],
               "at": time.time()}
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(row))
        os.replace(tmp, self.stats_path)


def read_engine_stats(stats_dir: str) -> list[dict[str, Any]]:
    """Every engine replica's figures, busy_s brought up to now for engines still busy."""
    now, rows = time.time(), []
    for path in sorted(Path(stats_dir).glob("*.json")):
        row = json.loads(path.read_text())
        at, running = row.pop("at"), row.pop("running")
        if running:
            row["busy_s"] = round(row["busy_s"] + max(0.0, now - at), 4)
            row["seq_s"] = round(row["seq_s"] + running * max(0.0, now - at), 4)
        rows.append(row)
    return rows


@serve.deployment(max_ongoing_requests=6 * w.FA_ROLE_CONCURRENCY, **_OPTS)
class FAHost(EngineReplica):
    """All six financial-analyst roles on one engine (a Nalar agent host's layout), each
    role `w.FA_ROLE_CONCURRENCY` calls at a time, as the Nalar agents declare."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.role_slots: dict[str, asyncio.Semaphore] = {}

    async def _answer(self, role: str, ticker: str, question: str, turn: int,
                      session: str | None) -> dict[str, object]:
        slot = self.role_slots.setdefault(role, asyncio.Semaphore(w.FA_ROLE_CONCURRENCY))
        async with slot:
            delay = w.fa_tool_s(role, session or "", turn)
            if delay:
                await asyncio.sleep(delay)
            c = await self.generate(w.fa_prompt(role, session or "", ticker, question, turn),
                                    w.fa_max_tokens(session or ""), session)
        return {"role": role, "tokens": c.completion_tokens, "cached": c.cached_tokens}

    async def plan(self, ticker: str, question: str, turn: int,
                   session: str | None) -> dict[str, object]:
        return await self._answer("analyst", ticker, question, turn, session)

    async def answer(self, role: str, ticker: str, question: str, turn: int,
                     session: str | None) -> dict[str, object]:
        """One of the four specialists (`w.FA_SPECIALISTS`)."""
        return await self._answer(role, ticker, question, turn, session)

    async def summarize(self, ticker: str, question: str, turn: int,
                        session: str | None) -> dict[str, object]:
        return await self._answer("summary", ticker, question, turn, session)


@serve.deployment(max_ongoing_requests=64, **_OPTS)
class RouterClassifier:
    """The small classifier model on its own CPU (no engine)."""

    async def classify(self, query_id: str, kind: str) -> str:
        await asyncio.sleep(w.classify_s(query_id))
        return kind if kind in w.ROUTER_BRANCHES else "chat"


@serve.deployment(max_ongoing_requests=8, **_OPTS)
class RouterChat(EngineReplica):
    async def reply(self, query_id: str, session: str | None) -> int:
        c = await self.generate(w.router_prompt("chat", query_id), w.ROUTER_MAX_TOKENS, session)
        return c.completion_tokens


@serve.deployment(max_ongoing_requests=8, **_OPTS)
class RouterCoder(EngineReplica):
    async def code(self, query_id: str, session: str | None) -> int:
        c = await self.generate(w.router_prompt("code", query_id), w.ROUTER_MAX_TOKENS, session)
        return c.completion_tokens


@serve.deployment(max_ongoing_requests=4, **_OPTS)
class SWEPlanner(EngineReplica):
    async def plan(self, item: str, depth: int, session: str | None) -> int:
        c = await self.generate(w.swe_prompt("planner", item, depth), w.SWE_MAX_TOKENS, session)
        return c.completion_tokens


@serve.deployment(max_ongoing_requests=4, **_OPTS)
class SWEDeveloper(EngineReplica):
    async def develop(self, item: str, depth: int, part: int, session: str | None) -> int:
        await asyncio.sleep(w.swe_doc_s(item, depth, part))
        c = await self.generate(w.swe_prompt("developer", item, depth, part),
                                w.SWE_MAX_TOKENS, session)
        return c.completion_tokens


@serve.deployment(max_ongoing_requests=4, **_OPTS)
class SWETester(EngineReplica):
    async def test(self, item: str, depth: int, session: str | None) -> bool:
        await self.generate(w.swe_prompt("tester", item, depth), w.SWE_MAX_TOKENS, session)
        await asyncio.sleep(w.tool_delay_s("tests", item, depth))
        return not w.swe_test_fails(item, depth)


# -- the workflows (the ingress) ------------------------------------------------------------
async def call(method: Any, *args: Any) -> Any:
    """One agent call through a Serve handle, retried like a Nalar agent call by default
    (`nalar.retry.DEFAULT_RETRY`: 3 attempts, 0.5 s x 2^(n-1) ± 20 % apart, on retryable
    errors such as `EngineOverloaded`)."""
    attempt = 1
    while True:
        try:
            return await method.remote(*args)
        except NalarError as e:  # a RayTaskError that is also the replica's NalarError
            error: NalarError = getattr(e, "cause", e)
            delay = DEFAULT_RETRY.delay(attempt, error)
            if delay is None:
                raise error from None
            await asyncio.sleep(delay)
            attempt += 1


api = FastAPI()


@serve.deployment(max_ongoing_requests=100_000, **_OPTS)
@serve.ingress(api)
class Driver:
    """Runs the workload's workflow per HTTP request, calling the agents' deployments."""

    def __init__(self, workload: str, stats_dir: str, **agents: DeploymentHandle) -> None:
        self.stats_dir = stats_dir
        self.a = agents
        flows: dict[str, Callable[..., Awaitable[dict[str, object]]]] = {
            "fa_query": self.fa_query, "route_query": self.route_query,
            "swe_item": self.swe_item}
        self.flow_name = WORKFLOWS[workload]
        self.flow = flows[self.flow_name]

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/bench/engines")
    async def engines(self) -> dict[str, object]:
        return {"engines": read_engine_stats(self.stats_dir)}

    @api.post("/v1/workflows/{workflow}/runs")
    async def run(self, workflow: str, request: Request) -> JSONResponse:
        if workflow != self.flow_name:
            return JSONResponse({"error": {"code": "not_found",
                                           "message": f"workflow {workflow!r} is not served"}},
                                status_code=404)
        body = await request.json()
        session = body.get("session_id")
        try:
            output = await self.flow(session, **(body.get("input") or {}))
        except NalarError as e:
            error = getattr(e, "cause", e)
            return JSONResponse({"status": "failed", "error": {"code": error.error_code,
                                                               "message": error.message}})
        except Exception as e:  # a failed run, as the gateway reports it
            return JSONResponse({"status": "failed",
                                 "error": {"code": "internal", "message": repr(e)}})
        # "result" is what Nalar's gateway calls it
        return JSONResponse({"status": "succeeded", "output": output, "result": output})

    async def fa_query(self, session: str | None, ticker: str, question: str,
                       turn: int = 0) -> dict[str, object]:
        """Analyst, the four specialists in parallel, summarizer: all on `FAHost` replicas,
        each call placed by Serve's default router (power of two choices, no affinity)."""
        host = self.a["host"]
        await call(host.plan, ticker, question, turn, session)
        parts = await asyncio.gather(*(call(host.answer, role, ticker, question, turn, session)
                                       for role in w.FA_SPECIALISTS))
        summary = await call(host.summarize, ticker, question, turn, session)
        return {"summary": summary, "tokens": sum(int(p["tokens"]) for p in parts)}

    async def route_query(self, session: str | None, query_id: str,
                          kind: str) -> dict[str, object]:
        branch = await call(self.a["classifier"].classify, query_id, kind)
        if branch == "code":
            tokens = await call(self.a["coder"].code, query_id, session)
        else:
            tokens = await call(self.a["chat"].reply, query_id, session)
        return {"branch": branch, "tokens": tokens}

    async def swe_item(self, session: str | None, item: str) -> dict[str, object]:
        """Plan, develop in parallel, test; failed work re-enters at the planner."""
        depth = 0
        while True:
            await call(self.a["planner"].plan, item, depth, session)
            await asyncio.gather(*(call(self.a["developer"].develop, item, depth, part, session)
                                   for part in range(w.SWE_SUBTASKS)))
            if await call(self.a["tester"].test, item, depth, session):
                return {"item": item, "attempts": depth + 1}
            depth += 1


def build_app(args: argparse.Namespace, stats_dir: str) -> Any:
    """The workload's deployments with their fixed replica counts, under the driver."""
    engine = (args.workload, args.time_scale, args.seed, stats_dir)
    agents: dict[str, Any]
    if args.workload == "fa":
        agents = {"host": FAHost.options(num_replicas=args.engines).bind(*engine)}
    elif args.workload == "router":
        agents = {"classifier": RouterClassifier.options(num_replicas=1).bind(),
                  "chat": RouterChat.options(num_replicas=args.chat).bind(*engine),
                  "coder": RouterCoder.options(num_replicas=args.code).bind(*engine)}
    else:
        agents = {"planner": SWEPlanner.options(num_replicas=args.planner).bind(*engine),
                  "developer": SWEDeveloper.options(num_replicas=args.developer).bind(*engine),
                  "tester": SWETester.options(num_replicas=args.tester).bind(*engine)}
    return Driver.options(num_replicas=1).bind(args.workload, stats_dir, **agents)


# -- process --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=sorted(WORKFLOWS), required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--engines", type=int, default=4, help="fa: FAHost replicas")
    p.add_argument("--chat", type=int, default=2, help="router: RouterChat replicas")
    p.add_argument("--code", type=int, default=2, help="router: RouterCoder replicas")
    p.add_argument("--planner", type=int, default=2, help="swe: SWEPlanner replicas")
    p.add_argument("--developer", type=int, default=2, help="swe: SWEDeveloper replicas")
    p.add_argument("--tester", type=int, default=2, help="swe: SWETester replicas")
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs given to ray.init")
    p.add_argument("--stats-dir", default=None,
                   help="where engine replicas write their figures (default: a temp dir)")
    return p.parse_args(argv)


def _wait_http(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_parent()  # SIGTERM when the parent exits; the ppid poll below covers the rest
    parent = os.getppid()
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tmp = tempfile.mkdtemp(prefix="rayp-", dir="/tmp")  # short: Ray's socket paths live here
    stats_dir = args.stats_dir or os.path.join(tmp, "stats")
    os.makedirs(stats_dir, exist_ok=True)
    for old in Path(stats_dir).glob("*.json"):
        old.unlink()
    env = {"NALAR_LLM_TIME_SCALE": str(args.time_scale), "PYTHONPATH": str(PAPER_APP)}
    os.environ.update(env)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local only; else it writes ~/.ray
    logging.getLogger("ray").setLevel(logging.WARNING)

    try:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=os.path.join(tmp, "r"),
                 logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env={"env_vars": env})
        # ray.init installs its own SIGTERM handler (print and die): put ours back
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": "127.0.0.1", "port": args.port},
                    logging_config={"log_level": "WARNING", "enable_access_log": False})
        serve.run(build_app(args, stats_dir), name="bench", route_prefix="/",
                  logging_config={"log_level": "WARNING", "enable_access_log": False})
        _wait_http(args.port)
        if not stop.is_set():
            print("READY", flush=True)
        while not stop.is_set() and os.getppid() == parent:
            stop.wait(0.5)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
