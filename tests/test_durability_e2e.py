"""Retries, the idempotency ledger and deadlines on the whole stack (real processes)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis
from e2e_stack import StackHandle

pytestmark = pytest.mark.e2e


def run(http: httpx.Client, workflow: str, body: dict[str, Any], wait: float = 60) -> Any:
    r = http.post(f"/v1/workflows/{workflow}/runs", params={"wait": wait}, json=body)
    assert r.status_code in (200, 202), r.text
    return r.json()


def events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    r = http.get(f"/v1/runs/{run_id}/events", params={"follow": False})
    import json

    return [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]


def test_retryable_errors_are_retried_with_backoff(http: httpx.Client) -> None:
    out = run(http, "retry_until", {"input": {"succeed_on": 3}})
    assert out["status"] == "succeeded", out
    assert out["result"] == {"attempt": 3}
    retries = [e for e in events(http, out["run_id"]) if e["event"] == "retrying"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert retries[0]["error"]["code"] == "unavailable"
    by_type = run(http, "retry_until", {"input": {"succeed_on": 2, "error": "connection",
                                                  "method": "on_connection"}})
    assert by_type["result"] == {"attempt": 2}


def test_non_retryable_errors_fail_fast(http: httpx.Client) -> None:
    started = time.monotonic()
    out = run(http, "retry_until", {"input": {"succeed_on": 3, "error": "value"}})
    assert out["status"] == "failed" and "attempt 1" in out["error"]["message"]
    assert not [e for e in events(http, out["run_id"]) if e["event"] == "retrying"]
    never = run(http, "never_retried", {"input": {}})
    assert never["status"] == "failed" and never["error"]["code"] == "unavailable"
    assert time.monotonic() - started < 10


def test_once_block_is_not_repeated_by_retries(http: httpx.Client, stack: StackHandle) -> None:
    key = f"charge-{time.time_ns()}"
    out = run(http, "charge", {"input": {"key": key, "succeed_on": 3}})
    assert out["status"] == "succeeded", out
    res = out["result"]
    assert res["attempt"] == 3 and res["charged"] == 1 and res["counter"] == 1
    assert res["tries"] == 0  # the block did not run again: its record was found
    assert redis.Redis.from_url(stack.redis_url).get(f"test:counter:{key}") == b"1"
    assert res["key"] == f"{out['run_id']}.1.charge"


def test_non_idempotent_tool_records_its_result(http: httpx.Client,
                                                stack: StackHandle) -> None:
    key = f"pay-{time.time_ns()}"
    out = run(http, "pay_twice", {"input": {"key": key}})
    assert out["status"] == "succeeded", out
    first, second = out["result"]
    assert (first["counter"], second["counter"]) == (1, 2)
    rid = out["run_id"]
    assert first["idempotency_key"] == f"{rid}.1.Payments.pay"
    r = redis.Redis.from_url(stack.redis_url)
    ledger = [k for k in r.scan_iter(f"{stack.prefix}:nalar:ledger:{{{rid}}}:*")
              if not k.endswith(b":claim")]
    assert len(ledger) == 2  # one record per call


def test_run_deadline_times_out_and_says_where_it_was_stuck(http: httpx.Client) -> None:
    started = time.monotonic()
    out = run(http, "slow_call", {"input": {"seconds": 30}, "timeout_s": 1.5})
    assert time.monotonic() - started < 10
    assert out["status"] == "failed" and out["error"]["code"] == "timeout", out
    assert "Echo.slow" in out["error"]["message"]
    stuck = out["error"]["details"]["stuck"]
    assert any(s["agent"] == "Echo" and s["method"] == "slow" for s in stuck)
    assert out["deadline"] and out["deadline"] - out["created_at"] == pytest.approx(1.5, abs=0.5)


def test_per_call_timeout(http: httpx.Client) -> None:
    out = run(http, "slow_call", {"input": {"seconds": 30, "call_timeout": 1}})
    assert out["status"] == "failed" and out["error"]["code"] == "timeout", out
    assert "deadline" in out["error"]["message"]


def test_bad_timeout_is_422(http: httpx.Client) -> None:
    r = http.post("/v1/workflows/slow_call/runs", json={"input": {"seconds": 1},
                                                        "timeout_s": -1})
    assert r.status_code == 422 and "timeout_s" in r.text
