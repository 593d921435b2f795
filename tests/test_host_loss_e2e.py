"""An agent host killed with SIGKILL mid-run: its calls (the driver included) run again on
another host, and the re-run driver finds its finished calls in the stream instead of hanging."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from e2e_stack import BASIC_APP, config_env
from nalar_common.servers import die_with_parent, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    prefix = "h" + uuid.uuid4().hex[:8]
    port = free_port()
    base = {**os.environ, "NALAR_NATS_URL": nats_url, "NALAR_REDIS_URL": redis_url,
            "NALAR_NATS_PREFIX": prefix, "NALAR_NATS_INSTANCE_TTL_S": "2",
            "NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_APP": str(BASIC_APP),
            "NALAR_GATEWAY_APP": str(BASIC_APP), "NALAR_GATEWAY_PORT": str(port),
            **config_env(BASIC_APP, None)}
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, module: str, **env: str) -> None:
        out = open(tmp_path / f"{name}.log", "wb")
        procs[name] = subprocess.Popen([sys.executable, "-m", module], env={**base, **env},
                                       stdout=out, stderr=subprocess.STDOUT,
                                       preexec_fn=die_with_parent)

    start("lc", "nalar_local_controller")
    start("host-a", "nalar_agent_host", NALAR_AGENT_HOST_HOST_ID="a")
    start("host-b", "nalar_agent_host", NALAR_AGENT_HOST_HOST_ID="b")
    start("gateway", "nalar_gateway")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz").json().get("driver_instances") == 2:
                break
        except (httpx.HTTPError, ValueError):
            pass
        assert time.monotonic() < deadline, "services not ready"
        time.sleep(0.2)
    yield {"url": url, "prefix": prefix, "procs": procs, "nats_url": nats_url}
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


async def _driver_host(nats_url: str, prefix: str, run: str) -> str:
    """The host running the driver, once the driver's first call has resolved."""
    import msgpack

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # by time: under load a flush can be fast or not
            try:
                await js.get_msg(f"{prefix.upper()}_NALAR_FUTURES",
                                 subject=f"{prefix}.nalar.fut.{run}.1", direct=True)
                msg = await js.get_msg(f"{prefix.upper()}_NALAR_RUNS",
                                       subject=f"{prefix}.nalar.run.{run}.started", direct=True)
                return str(msgpack.unpackb(msg.data)["b"]["host"])
            except nats.js.errors.NotFoundError:
                await nc.flush()
        raise AssertionError("driver never got its first result")
    finally:
        await nc.close()


def test_driver_rerun_after_host_sigkill(services: dict[str, object]) -> None:
    url, prefix = str(services["url"]), str(services["prefix"])
    procs: dict[str, subprocess.Popen[bytes]] = services["procs"]  # type: ignore[assignment]
    run = httpx.post(f"{url}/v1/workflows/echo_then_nap/runs",
                     json={"input": {"seconds": 1.5}}).json()["run_id"]
    host = asyncio.run(_driver_host(str(services["nats_url"]), prefix, run))
    procs[f"host-{host}"].send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        view = httpx.get(f"{url}/v1/runs/{run}").json()
        if view["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    assert view["status"] == "succeeded", json.dumps(view)
    assert view["result"] == ["first", 1.5]
    futures = {f["future"]: f for f in httpx.get(f"{url}/v1/runs/{run}/futures").json()
               ["futures"]}
    survivor = "b" if host == "a" else "a"
    assert futures["0"]["executor"] == f"{survivor}._driver"
    assert futures["1"]["status"] == "succeeded"


def test_waiting_run_resumes_on_another_host(services: dict[str, object]) -> None:
    """A run waiting for a signal holds no host: kill the host that started it, signal it,
    and it finishes on the other one."""
    import msgpack

    url, prefix = str(services["url"]), str(services["prefix"])
    procs: dict[str, subprocess.Popen[bytes]] = services["procs"]  # type: ignore[assignment]
    run = httpx.post(f"{url}/v1/workflows/approve/runs", json={"input": {"amount": 1}}
                     ).json()["run_id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/v1/runs/{run}").json()["status"] != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    async def started_host() -> str:
        nc = await nats.connect(str(services["nats_url"]))
        try:
            msg = await nc.jetstream().get_msg(f"{prefix.upper()}_NALAR_RUNS",
                                               subject=f"{prefix}.nalar.run.{run}.started",
                                               direct=True)
            return str(msgpack.unpackb(msg.data)["b"]["host"])
        finally:
            await nc.close()

    host = asyncio.run(started_host())
    procs[f"host-{host}"].send_signal(signal.SIGKILL)
    procs[f"host-{host}"].wait(10)
    r = httpx.post(f"{url}/v1/runs/{run}/signals/approval", json={"value": "yes"})
    assert r.status_code == 202
    deadline = time.monotonic() + 30
    while (view := httpx.get(f"{url}/v1/runs/{run}").json())["status"] != "succeeded":
        assert view["status"] != "failed" and time.monotonic() < deadline, view
        time.sleep(0.1)
    assert view["result"] == {"quote": 2, "decision": "yes"}
