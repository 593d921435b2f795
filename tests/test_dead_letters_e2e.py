"""Dead letters end to end: a call that kills every host that runs it is dead-lettered after
`max_deliver` deliveries, its run says where it is stuck, and an operator retries it (after
the fix) or discards it (the run fails with `dead_lettered`); junk on a service's subject is
dead-lettered too, and only calls can be retried."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import redis
from e2e_stack import BASIC_APP, Services, start_services
from nalar_common.testing import WaitTimeout, wait_until_sync

pytestmark = pytest.mark.e2e

POISON_HOST = ("host-b", "nalar_agent_host", {"NALAR_NODE_NAME": "n1",
                                              "NALAR_AGENT_HOST_HOST_ID": "b",
                                              "NALAR_AGENT_HOST_AGENTS": "Poison",
                                              "NALAR_AGENT_HOST_DRIVERS": "false"})


@pytest.fixture
def svc(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[Services]:
    handle = start_services(BASIC_APP, nats_url, redis_url, tmp_path, [
        ("lc", "nalar_local_controller", {"NALAR_NODE_NAME": "n1"}),
        ("host-a", "nalar_agent_host", {"NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_HOST_ID": "a",
                                        "NALAR_AGENT_HOST_AGENTS": "Echo"}),
        POISON_HOST,
        ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_NATS_INSTANCE_TTL_S": "2", "NALAR_LC_MAX_DELIVER": "1"})
    try:
        handle.wait_until(lambda: _poison_up(handle), what="Poison instance")
        yield handle
    finally:
        handle.stop()


def _poison_up(svc: Services) -> bool:
    cluster = httpx.get(f"{svc.url}/v1/cluster").json()
    return any(i["agent"] == "Poison" for i in cluster["instances"])


def _wait(svc: Services, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """`check` until truthy, the services' logs on a timeout (a host here dies on purpose:
    not `Services.wait_until`, which stops at a dead service)."""
    try:
        return wait_until_sync(check, what=what, timeout=timeout, interval=0.2)
    except WaitTimeout as exc:
        raise WaitTimeout(f"{what}\n{svc.logs()}", exc.timeout, exc.last) from None


def _stuck_run(svc: Services, flag: str) -> tuple[str, dict[str, Any]]:
    """Start a poisoned run; wait until its call is dead-lettered; restart the dead host."""
    rid = httpx.post(f"{svc.url}/v1/workflows/poisoned/runs",
                     json={"input": {"flag": flag}}).json()["run_id"]
    svc.procs["host-b"].wait(30)  # the call killed it
    view = _wait(svc, "stuck run", lambda: (v := httpx.get(f"{svc.url}/v1/runs/{rid}").json())
                 .get("stuck") and v)
    svc.start(BASIC_APP, [POISON_HOST], {"NALAR_NATS_INSTANCE_TTL_S": "2"})
    return rid, view


def test_poison_call_dead_lettered_then_retried_or_discarded(svc: Services) -> None:
    flag = f"fixed-{time.time_ns()}"
    rid, view = _stuck_run(svc, flag)
    assert view["status"] == "running"
    stuck = view["stuck"]
    assert stuck["agent"] == "Poison" and stuck["state"] == "dead-lettered"
    entries = httpx.get(f"{svc.url}/v1/dlq").json()["dead_letters"]
    entry = next(e for e in entries if e["id"] == stuck["dlq_id"])
    assert entry["kind"] == "call" and entry["run_id"] == rid and entry["method"] == "crash"
    assert "max_deliver" in entry["reason"] and entry["deliveries"] == 2
    shown = httpx.get(f"{svc.url}/v1/dlq/{entry['id']}").json()
    assert shown["call"]["agent"] == "Poison" and flag in shown["call"]["args"]
    cli = subprocess.run([sys.executable, "-m", "nalar", "dlq", "ls", "--url", svc.url],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and f"run {rid}" in cli.stdout, cli.stdout + cli.stderr

    # the fix is deployed: retry it, and the run finishes
    redis.Redis.from_url(svc.redis_url).set(f"test:counter:{flag}", 1)
    svc.wait_until(lambda: _poison_up(svc), what="Poison back")
    r = httpx.post(f"{svc.url}/v1/dlq/{entry['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "retried", r.text
    done = _wait(svc, "retried run", lambda: (v := httpx.get(f"{svc.url}/v1/runs/{rid}").json())
                 ["status"] in ("succeeded", "failed") and v)
    assert done["status"] == "succeeded" and done["result"] == "survived", done
    assert httpx.get(f"{svc.url}/v1/dlq/{entry['id']}").status_code == 404
    again = httpx.post(f"{svc.url}/v1/dlq/{entry['id']}/retry")
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"

    # another one nobody fixes: discard it, and its run fails with the reason
    rid2, view2 = _stuck_run(svc, f"never-{time.time_ns()}")
    r = httpx.post(f"{svc.url}/v1/dlq/{view2['stuck']['dlq_id']}/discard")
    assert r.status_code == 200 and r.json()["future_failed"] is True, r.text
    failed = _wait(svc, "discarded run", lambda: (
        v := httpx.get(f"{svc.url}/v1/runs/{rid2}").json())["status"] == "failed" and v)
    assert failed["error"]["code"] == "dead_lettered", failed


def test_junk_on_a_service_subject_is_dead_lettered_not_retryable(svc: Services) -> None:
    async def publish() -> None:
        nc = await nats.connect(svc.nats_url)
        await nc.publish(f"{svc.prefix}.nalar.exec.a", b"\x00garbage")
        await nc.flush()
        await nc.close()

    asyncio.run(publish())
    entry = _wait(svc, "exec dead letter", lambda: next(
        (e for e in httpx.get(f"{svc.url}/v1/dlq", params={"kind": "exec"}).json()
         ["dead_letters"]), None))
    assert "malformed dispatch" in entry["reason"] and entry["service"] == "agent-host:a"
    r = httpx.post(f"{svc.url}/v1/dlq/{entry['id']}/retry")
    assert r.status_code == 409 and "only calls" in r.json()["error"]["message"]
    ok = httpx.post(f"{svc.url}/v1/workflows/echo/runs", params={"wait": 30},
                    json={"input": {"value": 1}}).json()
    assert ok["status"] == "succeeded"  # the host still serves
    assert httpx.get(f"{svc.url}/v1/dlq/abc").status_code == 422
