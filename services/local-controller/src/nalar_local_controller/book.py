"""What a local controller holds: its calls by key, its instances' queues, the calls that wait
for an instance or a `resume`, its counters; and the task group its parts spawn work in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nalar_common.logging import get_logger

from nalar_local_controller.held import CallState, Held
from nalar_local_controller.queues import InstanceQueue

log = get_logger(__name__)

STATS = ("admitted", "dispatched", "completed", "failed", "forwarded", "requeued", "malformed",
         "migrated", "lease_transfers", "provisioned", "released", "stolen", "retried",
         "dead_lettered", "timed_out", "reconciled", "denied", "guardrail_stops")


class Book:
    def __init__(self) -> None:
        self.held: dict[str, Held] = {}
        self.queues: dict[str, InstanceQueue] = {}
        self.unplaced: dict[str, list[Held]] = {}  # agent -> calls waiting for an instance
        self.paused: dict[str, list[Held]] = {}  # run -> its calls a guardrail paused
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)

    def holds(self, held: Held) -> bool:
        """Whether `held` is still this controller's (not ended, not replaced by a copy)."""
        return self.held.get(held.key) is held

    def end(self, held: Held) -> bool:
        """Stop holding `held`; False when it was not held (someone ended it already)."""
        if self.held.pop(held.key, None) is None:
            return False
        held.state = CallState.DONE
        return True

    def queue_of(self, held: Held) -> InstanceQueue | None:
        return self.queues.get(held.instance or "")

    def off_instance(self, held: Held) -> InstanceQueue | None:
        """Its instance no longer runs it: the slot it held there is free. Its queue."""
        queue = self.queue_of(held)
        if queue is not None:
            queue.inflight.pop(held.key, None)
        return queue

    def unqueue(self, held: Held) -> None:
        """Take a call that has not started out of every queue and waiting list."""
        for queue in self.queues.values():
            queue.take(lambda h: h is not held)
        waiting = self.unplaced.get(held.agent)
        if waiting and held in waiting:
            waiting.remove(held)

    def wait_for_instance(self, held: Held) -> None:
        held.state = CallState.UNPLACED
        self.unplaced.setdefault(held.agent, []).append(held)


class Tasks:
    """The controller's task group, for work its parts start from callbacks: each task logs
    its own failure and never stops the others."""

    def __init__(self) -> None:
        self._tg: asyncio.TaskGroup | None = None

    def start(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        assert self._tg is not None, "the controller has not started"
        self._tg.create_task(self._guarded(coro))

    def later(self, delay: float, book: Book, held: Held,
              step: Callable[[Held], Awaitable[Any]]) -> None:
        """`step(held)` after `delay`, if the call is still held and not dispatched."""

        async def go() -> None:
            await asyncio.sleep(delay)
            if book.holds(held) and not held.dispatched:
                await step(held)

        self.spawn(go())

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except Exception:
            log.exception("local_controller.task_failed")


class OneShot:
    """One-shot actions (a migration, a provision) stay in a few policy snapshots: each is
    applied once, remembered for `keep_s`."""

    def __init__(self, keep_s: float = 300.0) -> None:
        self.keep_s = keep_s
        self._done: dict[str, float] = {}

    def first_time(self, action: dict[str, str]) -> bool:
        aid = action.get("id", "")
        if not aid or aid in self._done:
            return False
        now = time.monotonic()
        self._done[aid] = now
        for old in [k for k, at in self._done.items() if now - at > self.keep_s]:
            del self._done[old]
        return True
