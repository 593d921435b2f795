"""Cancelling a run: queued calls fail at once, running ones are stopped (async cancelled, sync
told), the run ends `cancelled` and its futures resolve with `Cancelled` errors."""

from __future__ import annotations

import time

import httpx
import pytest
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e


def _futures(http: httpx.Client, run: str) -> dict[str, dict[str, object]]:
    return {f["future"]: f for f in http.get(f"/v1/runs/{run}/futures").json()["futures"]}


def test_cancel_running_and_queued_calls(http: httpx.Client) -> None:
    run = http.post("/v1/workflows/long_job/runs", json={"input": {"seconds": 30}}
                    ).json()["run_id"]
    wait_until_sync(lambda: _futures(http, run), until=lambda futs: len(futs) == 4,
                    what="the driver and its three calls created")
    # the sleeper and the spinner running (the third call waits for the sleeper)
    wait_until_sync(lambda: sum(i["inflight"] for i in http.get("/v1/cluster").json()[
        "instances"] if i["agent"] == "Echo") >= 2, what="two Echo calls in flight")
    started = time.monotonic()
    r = http.post(f"/v1/runs/{run}/cancel")
    assert r.status_code == 202 and r.json() == {"run_id": run, "status": "cancelled"}
    view = http.get(f"/v1/runs/{run}").json()
    assert view["status"] == "cancelled" and view["error"]["code"] == "cancelled"
    futs: dict[str, dict[str, object]] = wait_until_sync(
        lambda: _futures(http, run), timeout=10, what="every future resolved",
        until=lambda futs: all(f["status"] != "pending" for f in futs.values()))
    for fid in ("1", "3"):  # the async sleeper and the call waiting on it
        assert futs[fid]["status"] == "failed"
        assert futs[fid]["error"]["code"] == "cancelled"  # type: ignore[index]
    assert futs["2"]["error"]["code"] == "cancelled"  # type: ignore[index]  # sync: told
    assert time.monotonic() - started < 10  # nobody waited the 30 s
    assert http.post(f"/v1/runs/{run}/cancel").status_code == 409


def test_cancel_errors(http: httpx.Client) -> None:
    assert http.post("/v1/runs/0123456789abcdef0123456789abcdef/cancel").status_code == 404
    done = http.post("/v1/workflows/typed/runs", params={"wait": 30},
                     json={"input": {"count": 1, "label": "x"}}).json()["run_id"]
    r = http.post(f"/v1/runs/{done}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert http.get(f"/v1/runs/{done}").json()["status"] == "succeeded"
