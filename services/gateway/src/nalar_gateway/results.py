"""Run results for `?wait`: one core subscription on every run's root future (`nalar.fut.*.0`),
shared by all the requests that wait, in place of a subscription (a SUB, an UNSUB and every
other result of the run) per request.

A request that starts a run says it will wait before the driver call is published
(`expect`), so the result cannot arrive unheard; one that waits for a run started elsewhere (a
repeated idempotency key) also looks the result up in the stream, at once and again after
~0.1 s and ~1 s (a result delivered just before the wait began may not be stored yet). After a
reconnect every awaited run is looked up again, since core messages are lost meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nalar_common.bus import Bus
from nalar_common.futures import FutureResult
from nalar_common.logging import get_logger
from nalar_common.subjects import ROOT_FUTURE
from nats.aio.msg import Msg

log = get_logger(__name__)

LOOK_AGAIN_S = (0.0, 0.1, 0.9)


class RunResults:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._waiting: dict[str, list[asyncio.Future[FutureResult]]] = {}
        self._expected: dict[str, asyncio.Future[FutureResult]] = {}
        self._sub: Any = None

    @property
    def waiting(self) -> int:
        """Runs a request waits for now."""
        return len(self._waiting)

    async def start(self) -> None:
        self._sub = await self.bus.nc.subscribe(self.bus.names.future("*", ROOT_FUTURE),
                                                cb=self._on_result)
        self.bus.on_reconnect(self.recheck)

    def expect(self, run: str) -> None:
        """Before the run's driver call is published: its result is kept for `wait`, which
        must follow (or `forget`)."""
        self._expected[run] = self._add(run)

    def forget(self, run: str) -> None:
        """An `expect` that no `wait` will follow (the run was not started)."""
        fut = self._expected.pop(run, None)
        if fut is not None:
            self._drop(run, fut)

    async def wait(self, run: str, timeout: float) -> FutureResult | None:
        """The run's result, or None if it has none within `timeout` seconds."""
        fut = self._expected.pop(run, None)
        look_up = fut is None
        if fut is None:
            fut = self._add(run)
        try:
            async with asyncio.timeout(timeout):
                if not look_up:
                    return await fut
                async with asyncio.TaskGroup() as tg:
                    looking = tg.create_task(self._look_up(run, fut))
                    result = await fut
                    looking.cancel()
                return result
        except TimeoutError:
            return None
        finally:
            self._drop(run, fut)

    def _add(self, run: str) -> asyncio.Future[FutureResult]:
        fut: asyncio.Future[FutureResult] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(run, []).append(fut)
        return fut

    def _drop(self, run: str, fut: asyncio.Future[FutureResult]) -> None:
        waiters = self._waiting.get(run)
        if waiters is None:
            return
        with contextlib.suppress(ValueError):
            waiters.remove(fut)
        if not waiters:
            del self._waiting[run]

    def _deliver(self, result: FutureResult) -> None:
        for fut in self._waiting.get(result.run, ()):
            if not fut.done():
                fut.set_result(result)

    async def _on_result(self, msg: Msg) -> None:
        run = msg.subject.rsplit(".", 2)[-2]
        if run in self._waiting:  # the results of runs nobody waits for here are dropped
            self._deliver(FutureResult(run, ROOT_FUTURE, msg.data, dict(msg.headers or {})))

    async def _look_up(self, run: str, fut: asyncio.Future[FutureResult]) -> None:
        names = self.bus.names
        for delay in LOOK_AGAIN_S:
            await asyncio.sleep(delay)
            if fut.done():
                return
            try:
                stored = await self.bus.direct_get_last(names.futures_stream,
                                                        names.future(run, ROOT_FUTURE))
            except Exception as exc:  # the subscription still covers it
                log.warning("run.result_lookup_failed", run_id=run, error=str(exc))
                continue
            if stored is not None:
                self._deliver(FutureResult(run, ROOT_FUTURE, stored.data, stored.headers))
                return

    async def recheck(self) -> None:
        """Look every awaited run's result up in one batch (after a reconnect)."""
        if not self._waiting:
            return
        names = self.bus.names
        subjects = {names.future(run, ROOT_FUTURE): run for run in self._waiting}
        found = await self.bus.multi_last(names.futures_stream, subjects)
        for subject, stored in found.items():
            self._deliver(FutureResult(subjects[subject], ROOT_FUTURE, stored.data,
                                       stored.headers))
        log.info("run.results_rechecked", waiting=len(subjects), found=len(found))
