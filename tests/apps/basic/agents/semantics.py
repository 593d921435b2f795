"""Agents for the semantic suite that runs against local mode and the stack
(tests/test_semantics.py): calls made inside agent methods, a timed-out call that its retry
policy tries again, and calls that hold until their run is cancelled."""

from __future__ import annotations

import asyncio
import time

import nalar
from agents.basic import Echo
from agents.durable import bump


@nalar.agent(concurrency=8)
class Relay:
    def double(self, x: int) -> dict[str, object]:
        """A call made inside an agent method (its future a child of this call's)."""
        fut = nalar.stub(Echo).add(x, x)
        return {"value": fut.value(timeout=30), "future": fut.future}

    async def adouble(self, x: int) -> dict[str, object]:
        fut = nalar.stub(Echo).add(x, x)
        return {"value": await fut, "future": fut.future}


@nalar.agent(concurrency=4)
class Patient:
    @nalar.method(timeout=0.3, retry=nalar.Retry(attempts=3, backoff=0.01, jitter=0,
                                                 on=("timeout",)))
    async def late_then_ok(self, ok_on: int) -> int:
        """Hangs past its timeout on attempts before `ok_on`; retried on `timeout`."""
        attempt = nalar.current_attempt()
        if attempt < ok_on:
            await asyncio.sleep(60)
        return attempt


@nalar.agent(concurrency=4)
class Holder:
    """Counts its calls under `key` when they start (so a test sees them running), then holds
    for `seconds` unless the run is cancelled."""

    async def sleep(self, key: str, seconds: float) -> float:
        await asyncio.to_thread(bump, key)
        await asyncio.sleep(seconds)
        return seconds

    def spin(self, key: str, seconds: float) -> str:
        bump(key)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if nalar.cancelled():
                return "stopped"
            time.sleep(0.01)
        return "finished"
