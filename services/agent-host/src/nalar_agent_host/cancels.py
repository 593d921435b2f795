"""Cancelling runs on a host: user code of a cancelled run is stopped (an async method is
cancelled, a sync one sees `nalar.cancelled()`), and its later calls do not start."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nalar.hosting import CallContext, CancelFlag
from nalar_common.calls import CallSpec
from nalar_common.errors import Cancelled
from nalar_common.logging import get_logger

log = get_logger(__name__)

KEEP_S = 3600.0  # a cancelled run is remembered this long


class Cancellations:
    def __init__(self) -> None:
        self._cancelled: dict[str, float] = {}
        self._running: dict[str, dict[str, tuple[asyncio.Future[Any], CancelFlag]]] = {}

    def __contains__(self, run: str) -> bool:
        return run in self._cancelled

    def cancel(self, run: str) -> None:
        now = time.monotonic()
        self._cancelled[run] = now
        for old in [r for r, at in self._cancelled.items() if now - at > KEEP_S]:
            del self._cancelled[old]
        for task, flag in list(self._running.get(run, {}).values()):
            flag.set()
            task.cancel()
        log.info("run.cancelled_here", run_id=run)

    async def run(self, call: CallSpec, ctx: CallContext, coro: Any) -> Any:
        """Run user code so that cancelling its run stops it; either way its future resolves
        `Cancelled`."""
        if call.run in self._cancelled:
            coro.close()
            raise Cancelled(f"run {call.run} was cancelled")
        ctx.cancelled = CancelFlag()
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)  # awaited right here
        running = self._running.setdefault(call.run, {})
        running[call.future] = (task, ctx.cancelled)
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled() and call.run in self._cancelled:
                raise Cancelled(f"run {call.run} was cancelled") from None
            raise
        finally:
            if not task.done():
                task.cancel()
            running.pop(call.future, None)
            if not running:
                self._running.pop(call.run, None)
