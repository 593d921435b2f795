"""An agent host killed with SIGKILL mid-run: its calls (the driver included) run again on
another host, and the re-run driver finds its finished calls in the stream instead of hanging."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from e2e_stack import BASIC_APP, two_hosts
from nalar_common.testing import wait_until, wait_until_sync

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    with two_hosts(BASIC_APP, nats_url, redis_url, tmp_path) as handle:
        yield {"url": handle.url, "prefix": handle.prefix, "procs": handle.procs,
               "nats_url": nats_url}


async def _driver_host(nats_url: str, prefix: str, run: str) -> str:
    """The host running the driver, once the driver's first call has resolved."""
    import msgpack

    nc = await nats.connect(nats_url)
    js = nc.jetstream()

    async def host() -> str:
        await js.get_msg(f"{prefix.upper()}_NALAR_FUTURES",
                         subject=f"{prefix}.nalar.fut.{run}.1", direct=True)
        msg = await js.get_msg(f"{prefix.upper()}_NALAR_RUNS",
                               subject=f"{prefix}.nalar.run.{run}.started", direct=True)
        return str(msgpack.unpackb(msg.data)["b"]["host"])

    try:  # polled often: the driver naps 1.5 s after that result, its host must die then
        return await wait_until(host, what="the driver's first result", timeout=30,  # type: ignore[no-any-return]
                                interval=0.02, ignore=(nats.js.errors.NotFoundError,))
    finally:
        await nc.close()


def test_driver_rerun_after_host_sigkill(services: dict[str, object]) -> None:
    url, prefix = str(services["url"]), str(services["prefix"])
    procs: dict[str, subprocess.Popen[bytes]] = services["procs"]  # type: ignore[assignment]
    run = httpx.post(f"{url}/v1/workflows/echo_then_nap/runs",
                     json={"input": {"seconds": 1.5}}).json()["run_id"]
    host = asyncio.run(_driver_host(str(services["nats_url"]), prefix, run))
    procs[f"host-{host}"].send_signal(signal.SIGKILL)
    view = wait_until_sync(lambda: httpx.get(f"{url}/v1/runs/{run}").json(), timeout=60,
                           until=lambda v: v["status"] in ("succeeded", "failed"),
                           what="the run to finish on the other host")
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
    wait_until_sync(lambda: httpx.get(f"{url}/v1/runs/{run}").json(),
                    until=lambda v: v["status"] == "waiting", what="the run waiting")

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

    def succeeded(view: dict[str, Any]) -> bool:
        assert view["status"] != "failed", view
        return bool(view["status"] == "succeeded")

    view = wait_until_sync(lambda: httpx.get(f"{url}/v1/runs/{run}").json(), until=succeeded,
                           what="the signalled run to finish on the other host")
    assert view["result"] == {"quote": 2, "decision": "yes"}
