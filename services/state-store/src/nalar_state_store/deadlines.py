"""Run deadlines: every run has one (its `timeout_s`, or the gateway's default); when it
passes and the run has not finished, its result becomes a `Timeout` error that says where it
was stuck, and its calls are cancelled. Deadlines live in a Redis sorted set (AOF: they
survive restarts); several state stores may run, and `ZREM` decides which one fires a run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nalar_common.bus import Bus
from nalar_common.calls import publish_result
from nalar_common.journal import Event, deadline_error, record
from nalar_common.logging import get_logger
from nalar_common.state import SessionStore
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H
from redis.asyncio.client import Pipeline

log = get_logger(__name__)


class RunDeadlines:
    BATCH = 100

    def __init__(self, bus: Bus, store: SessionStore, interval_s: float = 0.5) -> None:
        self.bus, self.store, self.interval_s = bus, store, interval_s
        self.key = bus.names.redis("deadlines")
        self.fired = 0

    async def add(self, run: str, deadline: float) -> None:
        await self.store.r.zadd(self.key, {run: deadline})

    def add_to(self, pipe: Pipeline, run: str, deadline: float) -> None:
        """Queue `add` on a Redis pipeline."""
        pipe.zadd(self.key, {run: deadline})

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.fire_due()
            except Exception as exc:  # Redis or NATS away: try again next tick
                log.warning("deadlines.check_failed", error=str(exc))

    async def fire_due(self) -> int:
        due: Any = await self.store.r.zrangebyscore(
            self.key, "-inf", time.time(), start=0, num=self.BATCH, withscores=True)
        fired = 0
        for raw, deadline in due:
            run = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not await self.store.r.zrem(self.key, run):
                continue  # another state store took it
            try:
                fired += await self._fire(run, deadline)
            except Exception:
                await self.store.r.zadd(self.key, {run: time.time() + 1.0})
                raise
        return fired

    async def _fire(self, run: str, deadline: float) -> int:
        n = self.bus.names
        if await self.bus.direct_get_last(n.futures_stream, n.future(run, ROOT_FUTURE)):
            return 0  # finished in time
        error = await deadline_error(self.bus, run, deadline)
        stuck = error.details["stuck"]
        stored = await publish_result(self.bus, {
            H.RUN: run, H.FUTURE: ROOT_FUTURE, H.AGENT: DRIVER_AGENT,
            H.METHOD: str(stuck[0]["method"]) if stuck and stuck[0]["future"] == ROOT_FUTURE
            else ""}, error=error, executor="state-store")
        if not stored:
            return 0
        await record(self.bus, run, Event.FINISHED, {"status": "failed",
                                                     "error": error.to_wire()},
                     acked=True, msg_id=f"{run}.finished")
        await self.bus.nc.publish(n.cancel(run), b"")  # stop what still runs or waits
        log.info("run.deadline_passed", run_id=run, stuck=error.message[:500])
        self.fired += 1
        return 1
