"""The systems under test, each started fresh for a workload and stopped after it:

- `nalar`: the global controller's policies (load-aware routing, KV-cache affinity,
  head-of-line migration, priorities; the Rebalancer too where each engine serves one agent
  type), local controllers placing calls dynamically;
- `static`: no policy, every session's calls on the instance its hash names, first come
  first served, nothing moves (stands in for AutoGen/CrewAI-style runtimes);
- `ayo`: no policy, each call placed on the shortest queue when it is created and never
  moved (stands in for Ayo on Ray);
- `ray`: the same workloads on Ray Serve (`bench/ray_peer/serve.py`, in `.venv-bench`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nalar_common.servers import die_with_parent, free_port, start_nats, start_valkey
from nalar_common.subjects import DRIVER_AGENT

from paperbench.workloads import Workload

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "bench" / "apps" / "paper"
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"
sys.path.insert(0, str(APP))
sys.path.insert(0, str(ROOT / "tests"))
import simwork  # noqa: E402
from e2e_stack import start_services  # noqa: E402

SYSTEMS = ("nalar", "static", "ayo", "ray")
PLACEMENT = {"nalar": "dynamic", "static": "sticky", "ayo": "creation"}


@dataclass
class Running:
    name: str
    url: str
    engines_path: str  # GET it for the engines' load
    pids: dict[str, int] = field(default_factory=dict)
    no_engine: set[str] = field(default_factory=set)  # hosts whose engine nothing uses

    def engines(self) -> list[dict[str, Any]]:
        """One row per engine (GPU): `id`, `pool`, `busy_s`, `seq_s`."""
        body = httpx.get(self.url + self.engines_path, timeout=10, trust_env=False).json()
        if "engines" in body:  # the Ray peer
            return list(body["engines"])
        rows: dict[str, dict[str, Any]] = {}
        for inst in body["instances"]:
            engine = inst.get("engine") or {}
            if inst["host"] in self.no_engine:
                continue
            row = rows.setdefault(inst["host"], {
                "id": inst["host"], "pool": "", "busy_s": float(engine.get("busy_s", 0.0)),
                "seq_s": float(engine.get("seq_s", 0.0))})
            if inst["agent"] != DRIVER_AGENT:
                row["pool"] = ",".join(sorted({*row["pool"].split(","), inst["agent"]} - {""}))
        return list(rows.values())


@contextlib.contextmanager
def started(system: str, w: Workload, tmp: Path, seed: int) -> Iterator[Running]:
    if system == "ray":
        with _ray(w, tmp, seed) as running:
            yield running
    else:
        with _nalar(system, w, tmp, seed) as running:
            yield running


def start_servers(tmp: Path, cleanup: contextlib.ExitStack) -> tuple[Any, Any]:
    """nats-server (JetStream) and valkey (no AOF) in `tmp`, stopped by `cleanup`."""
    nats_srv = start_nats(tmp / "nats", log_file=tmp / "nats-server.log")
    cleanup.callback(nats_srv.stop)
    valkey = start_valkey(tmp / "valkey", appendonly=False, log_file=tmp / "valkey-server.log")
    cleanup.callback(valkey.stop)
    return nats_srv, valkey


@contextlib.contextmanager
def _nalar(system: str, w: Workload, tmp: Path, seed: int) -> Iterator[Running]:
    with contextlib.ExitStack() as cleanup:
        nats_srv, valkey = start_servers(tmp, cleanup)
        env = {"NALAR_LOG_LEVEL": "WARNING", "NALAR_NODE_NAME": "n1",
               "NALAR_GC_POLICIES": w.policies() if system == "nalar" else "",
               "NALAR_LC_PLACEMENT": PLACEMENT[system],
               "NALAR_LLM_TIME_SCALE": str(w.time_scale), "NALAR_LLM_SEED": str(seed),
               "NALAR_LLM_SIM_PARAMS": json.dumps(simwork.ENGINE[w.name]),
               "NALAR_AGENT_HOST_ENGINE_STARTUP_S": str(w.startup_s)}
        services: list[tuple[str, str, dict[str, str]]] = [
            ("gc", "nalar_global_controller", {}), ("lc-n1", "nalar_local_controller", {})]
        for h in w.hosts:
            services.append((f"host-{h.host_id}", "nalar_agent_host", {
                "NALAR_AGENT_HOST_HOST_ID": h.host_id, "NALAR_AGENT_HOST_AGENTS": h.agents,
                "NALAR_AGENT_HOST_SLOTS": str(h.slots)}))
        services.append(("gateway", "nalar_gateway", {}))
        svc = start_services(APP, nats_srv.url, valkey.url, tmp / "logs", services,
                             extra_env=env)
        cleanup.callback(svc.stop)
        wanted = sum(len(h.agents.split(",")) + 1 for h in w.hosts)  # + each host's drivers

        def ready() -> bool:
            if httpx.get(f"{svc.url}/readyz", timeout=2).status_code != 200:
                return False
            cluster = httpx.get(f"{svc.url}/v1/cluster", timeout=2).json()
            if len(cluster["instances"]) < wanted:
                return False
            return system != "nalar" or bool((cluster.get("policy") or {}).get("routes"))

        svc.wait_until(ready, timeout=90, what=f"{system} for {w.name}")
        pids = {name: p.pid for name, p in svc.procs.items()}
        pids.update({"nats-server": nats_srv.pid, "valkey-server": valkey.pid})
        yield Running(system, svc.url, "/v1/cluster", pids,
                      {h.host_id for h in w.hosts if not h.engine})


@contextlib.contextmanager
def _ray(w: Workload, tmp: Path, seed: int) -> Iterator[Running]:
    if not BENCH_PY.exists():
        raise RuntimeError(f"{BENCH_PY} is missing: run `make bench-env` first")
    port = free_port()
    log = open(tmp / "ray-serve.log", "wb")
    proc = subprocess.Popen(
        [str(BENCH_PY), str(ROOT / "bench" / "ray_peer" / "serve.py"), "--workload", w.name,
         "--port", str(port), "--time-scale", str(w.time_scale), "--seed", str(seed),
         *w.ray_args],
        stdout=subprocess.PIPE, stderr=log, preexec_fn=die_with_parent, cwd=ROOT,
        env={**os.environ, "NALAR_LLM_TIME_SCALE": str(w.time_scale)})
    try:
        _await_ready(proc, tmp / "ray-serve.log", timeout=180)
        yield Running("ray", f"http://127.0.0.1:{port}", "/v1/bench/engines",
                      {"ray-serve": proc.pid})
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _await_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Ray peer exited:\n{log.read_text()[-3000:]}")
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready and b"READY" in proc.stdout.readline():
            return
    raise TimeoutError(f"the Ray peer was not ready in {timeout:.0f} s:\n"
                       f"{log.read_text()[-3000:]}")
