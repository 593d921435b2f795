"""Retry policies and once-only side effects in local mode (the same rules as on a stack)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nalar.app import load_app
from nalar.local import run_local
from nalar.retry import Retry
from nalar_common.errors import AgentError, NalarError, Timeout, Unavailable

ROOT = Path(__file__).resolve().parents[3]
BASIC = str(ROOT / "tests" / "apps" / "basic")


def test_backoff_grows_and_stops() -> None:
    r = Retry(attempts=4, backoff=1, multiplier=2, max_backoff=3, jitter=0)
    err = Unavailable("down")
    assert [r.delay(a, err) for a in (1, 2, 3, 4)] == [1, 2, 3, None]
    jittered = Retry(attempts=9, backoff=1, jitter=0.5)
    assert all(0.5 <= (jittered.delay(1, err) or 0) <= 1.5 for _ in range(50))


def test_which_errors_retry() -> None:
    default = Retry()
    assert default.matches(Unavailable("x"))
    assert not default.matches(AgentError("ValueError: x", details={"type": "ValueError"}))
    assert not default.matches(Timeout("slow"))
    named = Retry(on=("timeout", "ConnectionError"))
    assert named.matches(Timeout("slow"))
    assert named.matches(AgentError("ConnectionError: x", details={"type": "ConnectionError"}))
    assert not named.matches(Unavailable("x"))  # only what it names
    assert Retry.never().delay(1, Unavailable("x")) is None
    with pytest.raises(ValueError):
        Retry(attempts=0)


def test_policies_resolve_per_method() -> None:
    app = load_app(BASIC)
    spec, pay = app.agents["Flaky"], app.agents["Payments"]
    assert spec.methods["until"].retry.attempts == 4  # the agent's
    assert spec.methods["on_connection"].retry.on == ("ConnectionError",)  # its own
    assert spec.methods["never"].retry.attempts == 1
    assert not pay.methods["pay"].idempotent
    assert spec.methods["until"].idempotent


async def test_retryable_errors_run_again_until_they_succeed() -> None:
    assert await run_local(BASIC, "retry_until", {"succeed_on": 3}) == {"attempt": 3}
    got = await run_local(BASIC, "retry_until", {"succeed_on": 2, "error": "connection",
                                                 "method": "on_connection"})
    assert got == {"attempt": 2}


async def test_other_errors_fail_at_once() -> None:
    with pytest.raises(AgentError) as info:
        await run_local(BASIC, "retry_until", {"succeed_on": 2, "error": "value"})
    assert "attempt 1" in info.value.message
    with pytest.raises(NalarError) as never:
        await run_local(BASIC, "never_retried", {})
    assert never.value.error_code == "unavailable"
    with pytest.raises(NalarError) as spent:  # past its attempts, the last error stands
        await run_local(BASIC, "retry_until", {"succeed_on": 9})
    assert "attempt 4" in spent.value.message


async def test_once_block_charges_once_across_retries() -> None:
    out = await run_local(BASIC, "charge", {"key": "local-1", "succeed_on": 3})
    assert out["attempt"] == 3 and out["charged"] == 1 and out["counter"] == 1
    assert out["key"].endswith(".1.charge")


async def test_non_idempotent_tool_has_a_key_per_call() -> None:
    first, second = await run_local(BASIC, "pay_twice", {"key": "local-pay"})
    assert (first["counter"], second["counter"]) == (1, 2)  # two calls, two effects
    assert first["idempotency_key"] != second["idempotency_key"]
    assert first["idempotency_key"].endswith(".1.Payments.pay")
