"""Human in the loop on the whole stack: a run waits for a signal without holding a worker,
and resumes when `POST /v1/runs/{id}/signals/{name}` gives it."""

from __future__ import annotations

import httpx
import pytest
from nalar_common.servers import ServerProcess
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e


def _until(http: httpx.Client, run: str, status: str, timeout: float = 30) -> dict[str, object]:
    def reached(view: dict[str, object]) -> bool:
        assert view["status"] not in ("succeeded", "failed") or status in (
            "succeeded", "failed"), view  # finished before it got there
        return view["status"] == status

    return wait_until_sync(lambda: http.get(f"/v1/runs/{run}").json(),  # type: ignore[no-any-return]
                           until=reached, timeout=timeout, what=f"run {run} {status}")


@pytest.mark.parametrize("workflow", ["approve", "approve_async"])
def test_signal_resumes_waiting_run(http: httpx.Client, workflow: str) -> None:
    run = http.post(f"/v1/workflows/{workflow}/runs", json={"input": {"amount": 41}}
                    ).json()["run_id"]
    view = _until(http, run, "waiting")
    assert view["waiting_for"] == {"signal": "approval"}
    r = http.post(f"/v1/runs/{run}/signals/approval", json={"value": {"ok": True, "by": "ann"}})
    assert r.status_code == 202, r.text
    assert r.json() == {"run_id": run, "signal": "approval", "status": "delivered"}
    done = _until(http, run, "succeeded")
    assert done["result"] == {"quote": 42, "decision": {"ok": True, "by": "ann"}}
    # the finished call before the wait ran once: the resumed driver replayed it
    futures = http.get(f"/v1/runs/{run}/futures").json()["futures"]
    assert [f["future"] for f in futures if f["agent"] == "Echo"][:1] == ["1"]
    again = http.post(f"/v1/runs/{run}/signals/approval", json={"value": 1})
    assert again.status_code == 409


def test_a_waiting_run_holds_no_subscription(http: httpx.Client,
                                             nats_server: ServerProcess | None) -> None:
    """The host its driver left keeps nothing of a waiting run: no subscription to its
    futures (one per waiting run was 1 KiB+ in nats-server and ~5 KiB on the host, 10,000
    lifetimes waiting: bench/lifetimes.py)."""
    if nats_server is None or nats_server.monitor_port is None:
        pytest.skip("an external NATS: its monitoring port is not known")
    run = http.post("/v1/workflows/approve/runs", json={"input": {"amount": 3}}).json()["run_id"]
    _until(http, run, "waiting")

    def subscriptions() -> list[str]:
        got = httpx.get(f"http://127.0.0.1:{nats_server.monitor_port}/subsz",
                        params={"subs": 1, "limit": 100_000}, timeout=10).json()
        return [s["subject"] for s in got.get("subscriptions_list") or [] if run in s["subject"]]

    assert subscriptions() == []
    assert http.post(f"/v1/runs/{run}/signals/approval", json={"value": True}).status_code == 202
    assert _until(http, run, "succeeded")["result"] == {"quote": 4, "decision": True}


def test_signal_errors(http: httpx.Client) -> None:
    run = http.post("/v1/workflows/approve/runs", json={"input": {"amount": 1}}).json()["run_id"]
    _until(http, run, "waiting")
    assert http.post("/v1/runs/0123456789abcdef0123456789abcdef/signals/approval",
                     json={"value": 1}).status_code == 404
    assert http.post(f"/v1/runs/{run}/signals/other", json={"value": 1}).status_code == 404
    assert http.post(f"/v1/runs/{run}/signals/approval", json={"nope": 1}).status_code == 422
    assert http.post(f"/v1/runs/{run}/signals/approval", json={"value": False}).status_code \
        == 202
    assert _until(http, run, "succeeded")["result"] == {"quote": 2, "decision": False}
    done = http.post("/v1/workflows/typed/runs", params={"wait": 30},
                     json={"input": {"count": 1, "label": "x"}}).json()["run_id"]
    assert http.post(f"/v1/runs/{done}/signals/approval", json={"value": 1}).status_code == 409


def test_signal_timeout_resolves_to_timeout_and_wakes_the_run(http: httpx.Client) -> None:
    run = http.post("/v1/workflows/approve_async/runs",
                    json={"input": {"amount": 9, "timeout": 0.5}}).json()["run_id"]
    done = _until(http, run, "succeeded", timeout=30)
    assert done["result"] == {"quote": 10, "decision": "timed out"}
    assert http.post(f"/v1/runs/{run}/signals/approval", json={"value": 1}).status_code == 409
