"""Workflows for retries, the idempotency ledger and deadlines."""

from __future__ import annotations

import nalar
from agents.basic import Echo
from agents.durable import Flaky, Payments


@nalar.workflow
def retry_until(succeed_on: int, error: str = "unavailable",
                method: str = "until") -> object:
    return getattr(nalar.stub(Flaky), method)(succeed_on, error).value(timeout=60)


@nalar.workflow
def never_retried() -> object:
    return nalar.stub(Flaky).never().value(timeout=60)


@nalar.workflow
def charge(key: str, succeed_on: int = 1) -> object:
    return nalar.stub(Flaky).charge_then_fail(key, succeed_on).value(timeout=60)


@nalar.workflow
def pay_twice(key: str) -> list[object]:
    """Two calls of a non-idempotent tool are two effects (two futures, two records)."""
    p = nalar.stub(Payments)
    return [p.pay(key).value(timeout=60), p.pay(key).value(timeout=60)]


@nalar.workflow
def slow_call(seconds: float, call_timeout: float = 0) -> object:
    """A slow call, optionally with a per-call timeout (queueing included)."""
    echo = nalar.stub(Echo, timeout=call_timeout or None)
    return echo.slow(seconds).value()


@nalar.workflow
def poisoned(flag: str) -> object:
    from agents.durable import Poison

    return nalar.stub(Poison).crash(flag).value()
