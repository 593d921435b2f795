"""A gateway killed with SIGKILL between a run's `created` event and its driver call: the state
store starts the run anyway (it has no gateway to thank), the driver runs once, and a retry
with the same idempotency key gets that same run back."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from e2e_stack import BASIC_APP, Services, one_node
from nalar_common.subjects import Names
from nalar_gateway.faults import CRASH_AFTER_CREATED

pytestmark = pytest.mark.e2e


@pytest.fixture
def svc(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[Services]:
    with one_node(BASIC_APP, nats_url, redis_url, tmp_path,
                  state_store={"NALAR_STATE_START_GRACE_S": "1"},
                  gateway={CRASH_AFTER_CREATED: "1"}) as handle:
        yield handle


def recovered_runs(svc: Services) -> set[str]:
    """Runs the state store says it started (`run.start_recovered`)."""
    out = set()
    for line in svc.log_paths["state-store"].read_text(errors="replace").splitlines():
        if "run.start_recovered" in line:
            try:
                out.add(str(json.loads(line)["run_id"]))
            except (ValueError, KeyError):
                pass
    return out


def test_run_starts_though_its_gateway_died_after_created(svc: Services,
                                                          redis_url: str) -> None:
    key = "order-" + uuid.uuid4().hex[:8]
    body = {"input": {"value": "survivor"}, "idempotency_key": key}
    with pytest.raises(httpx.TransportError):  # the gateway dies mid-request
        httpx.post(f"{svc.url}/v1/workflows/echo/runs", json=body, timeout=30)
    dead = svc.procs.pop("gateway")
    assert dead.wait(10) == -signal.SIGKILL

    # the key names the run whose `created` event the gateway wrote before dying
    r = redis.Redis.from_url(redis_url)
    run = r.get(Names(svc.prefix).idempotency_key("default", key))
    r.close()
    assert run is not None
    run_id = run.decode()
    svc.wait_until(lambda: run_id in recovered_runs(svc), timeout=30,
                   what="the state store to start the run")

    port = svc.url.rsplit(":", 1)[1]
    svc.start(BASIC_APP, [("gateway2", "nalar_gateway", {"NALAR_GATEWAY_PORT": port})],
              extra_env={"NALAR_NODE_NAME": "n1"})
    svc.wait_until(lambda: httpx.get(f"{svc.url}/v1/runs/{run_id}").json()["status"]
                   == "succeeded", timeout=60, what="the recovered run to succeed")
    view = httpx.get(f"{svc.url}/v1/runs/{run_id}").json()
    assert view["result"] == "survivor", view

    again = httpx.post(f"{svc.url}/v1/workflows/echo/runs?wait=10", json=body, timeout=30)
    assert again.status_code in (200, 202), again.text
    assert again.json()["run_id"] == run_id
    assert again.json()["status"] == "succeeded"

    events = httpx.get(f"{svc.url}/v1/runs/{run_id}/journal").json()["events"]
    assert [e["event"] for e in events].count("started") == 1  # one driver, not two
    assert recovered_runs(svc) == {run_id}
