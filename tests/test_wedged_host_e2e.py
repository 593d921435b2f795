"""A wedged agent host (frozen with SIGSTOP: no heartbeats, no progress) is detected by its
missing heartbeats; its call runs again elsewhere, and when it wakes up its late result is
dropped and counted, never delivered twice."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_stack import BASIC_APP, Services, start_services

pytestmark = pytest.mark.e2e


def _host(name: str, agents: str, drivers: bool) -> tuple[str, str, dict[str, str]]:
    return (f"host-{name}", "nalar_agent_host", {
        "NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_HOST_ID": name,
        "NALAR_AGENT_HOST_AGENTS": agents, "NALAR_AGENT_HOST_DRIVERS": str(drivers).lower()})


@pytest.fixture
def svc(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[Services]:
    handle = start_services(BASIC_APP, nats_url, redis_url, tmp_path, [
        ("lc", "nalar_local_controller", {"NALAR_NODE_NAME": "n1"}),
        _host("a", "Noop", True), _host("b", "Echo", False), ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_NATS_INSTANCE_TTL_S": "2", "NALAR_LC_REDELIVERY_BACKOFF_S": "0.2"})
    try:
        handle.wait_until(lambda: len(httpx.get(f"{handle.url}/v1/cluster").json()
                                      ["instances"]) == 3, what="instances")
        yield handle
    finally:
        for p in handle.procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
        handle.stop()


def _instances(svc: Services) -> dict[str, Any]:
    return {i["instance"]: i for i in httpx.get(f"{svc.url}/v1/cluster").json()["instances"]}


def test_frozen_host_is_detected_and_its_late_result_dropped(svc: Services) -> None:
    rid = httpx.post(f"{svc.url}/v1/workflows/nap/runs",
                     json={"input": {"seconds": 2.5}}).json()["run_id"]
    svc.wait_until(lambda: _instances(svc)["b.Echo"]["inflight"] == 1, what="call on b")
    os.kill(svc.procs["host-b"].pid, signal.SIGSTOP)  # wedged: alive, but silent
    stopped = time.monotonic()
    svc.start(BASIC_APP, [_host("c", "Echo", False)], {"NALAR_NATS_INSTANCE_TTL_S": "2"})
    svc.wait_until(lambda: httpx.get(f"{svc.url}/v1/runs/{rid}").json()["status"]
                   == "succeeded", timeout=60, what="run finished on c")
    recovered = time.monotonic() - stopped
    futures = {f["future"]: f for f in httpx.get(f"{svc.url}/v1/runs/{rid}/futures").json()
               ["futures"]}
    assert futures["1"]["executor"] == "c.Echo", futures["1"]
    assert "b.Echo" not in _instances(svc)  # its heartbeat stopped: it left the table

    os.kill(svc.procs["host-b"].pid, signal.SIGCONT)  # it wakes up and finishes late
    def duplicate() -> list[dict[str, Any]]:
        r = httpx.get(f"{svc.url}/v1/runs/{rid}/events", params={"follow": False})
        evs = [json.loads(x[5:]) for x in r.text.splitlines() if x.startswith("data:")]
        return [e for e in evs if e["event"] == "duplicate"]

    svc.wait_until(lambda: bool(duplicate()), timeout=30, what="late result dropped")
    assert duplicate()[0]["executor"] == "b.Echo" and duplicate()[0]["future"] == "1"
    view = httpx.get(f"{svc.url}/v1/runs/{rid}").json()
    assert view["status"] == "succeeded" and view["result"] == 2.5
    svc.wait_until(lambda: "b.Echo" in _instances(svc), what="b back in the table")
    print(f"frozen host: call finished elsewhere {recovered:.1f}s after the freeze")
