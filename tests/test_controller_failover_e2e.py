"""One global controller is active, a second waits: kill -9 the active one and the standby
takes over within seconds, while runs keep completing (local controllers keep enforcing the
last snapshot meanwhile)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import nats
import pytest
from e2e_stack import BASIC_APP, start_services

pytestmark = pytest.mark.e2e


async def _leader(nats_url: str, prefix: str) -> tuple[str, str]:
    """(the lease holder, the controller that wrote the current snapshot)."""
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(f"{prefix}_nalar_policy")
        entry = await kv.get("leader")
        snap = await kv.get("snapshot")
        return str(json.loads(entry.value)["id"]), str(json.loads(snap.value)["controller"])
    finally:
        await nc.close()


def test_standby_controller_takes_over(nats_url: str, redis_url: str, tmp_path: Path) -> None:
    svc = start_services(BASIC_APP, nats_url, redis_url, tmp_path, [
        ("gc-a", "nalar_global_controller", {"NALAR_GC_CONTROLLER_ID": "gc-a"}),
        ("gc-b", "nalar_global_controller", {"NALAR_GC_CONTROLLER_ID": "gc-b"}),
        ("lc", "nalar_local_controller", {"NALAR_NODE_NAME": "n1"}),
        ("host", "nalar_agent_host", {"NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_HOST_ID": "h1"}),
        ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_GC_LEASE_TTL_S": "2"})
    try:
        svc.wait_until(lambda: httpx.get(f"{svc.url}/readyz").status_code == 200)
        svc.wait_until(lambda: bool(asyncio.run(_leader(nats_url, svc.prefix))),
                       what="a leader")
        leader, _ = asyncio.run(_leader(nats_url, svc.prefix))
        standby = "gc-b" if leader == "gc-a" else "gc-a"
        svc.procs[leader].send_signal(signal.SIGKILL)
        svc.procs[leader].wait(10)
        del svc.procs[leader]  # expected dead
        killed_at = time.monotonic()

        def run_completes() -> None:
            r = httpx.post(f"{svc.url}/v1/workflows/chain/runs", params={"wait": 30},
                           json={"input": {"a": 1, "b": 2}}, timeout=40)
            assert r.json()["result"] == 25

        run_completes()  # right after the kill: the last snapshot still routes
        svc.wait_until(lambda: asyncio.run(_leader(nats_url, svc.prefix))[0] == standby,
                       timeout=20, what="the standby to take over")
        took = time.monotonic() - killed_at
        svc.wait_until(lambda: asyncio.run(_leader(nats_url, svc.prefix))[1] == standby,
                       timeout=20, what="a snapshot written by the new leader")
        run_completes()
        assert took < 10, f"standby took {took:.1f}s"
    finally:
        svc.stop()
