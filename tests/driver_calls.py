"""For tests of who publishes a run's driver call (the gateway, `Runtime.submit_root`, the
state store's start reconciler): an SDK runtime that sees one driver instance, and every
driver call the calls stream holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from nalar.runtime import Runtime
from nalar_common.bus import Bus
from nalar_common.cluster import InstanceInfo
from nalar_common.subjects import DRIVER_AGENT
from nats.js.errors import NotFoundError


@contextlib.asynccontextmanager
async def runtime_with_a_driver(bus: Bus) -> AsyncIterator[Runtime]:
    """A running `Runtime` whose view holds a driver instance on node `n1` (nothing runs it:
    the calls stay in the stream)."""
    runtime = Runtime(bus)
    task = asyncio.create_task(runtime.run())
    try:
        await runtime.wait_ready()
        runtime.view.instances["n1._driver"] = InstanceInfo(
            instance="n1._driver", host="h", node="n1", agent=DRIVER_AGENT, concurrency=1,
            ts=time.time() + 3600)
        yield runtime
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stored_driver_calls(bus: Bus) -> list[Any]:
    """Every driver call stored in NALAR_CALLS, in order (nobody consumes them here)."""
    out, seq = [], 1
    while True:
        try:
            msg = await bus.js.get_msg(bus.names.calls_stream, seq=seq,
                                       subject=bus.names.call("*", DRIVER_AGENT), next=True,
                                       direct=True)
        except NotFoundError:
            return out
        out.append(msg)
        seq = msg.seq + 1
