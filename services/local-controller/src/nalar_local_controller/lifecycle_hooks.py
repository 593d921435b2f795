"""The hooks that end or repeat a call by the clock or by its run: cancellation, deadlines,
retries (see `hooks`)."""

from __future__ import annotations

import time

from nalar_common.errors import Cancelled, Timeout
from nalar_common.wire import Done

from nalar_local_controller.book import Book
from nalar_local_controller.held import Held
from nalar_local_controller.hooks import CallHook
from nalar_local_controller.outcomes import Outcomes
from nalar_local_controller.runs import RunFacts


class CancelledRuns(CallHook):
    """A cancelled run's calls that have not started fail with `Cancelled` (running ones are
    stopped by their host), and its later calls are refused."""

    KEEP_S = 3600.0

    def __init__(self, book: Book, outcomes: Outcomes) -> None:
        self.book, self.outcomes = book, outcomes
        self._cancelled: dict[str, float] = {}

    def __contains__(self, run: object) -> bool:
        return run in self._cancelled

    async def before_admit(self, held: Held, facts: RunFacts) -> bool:
        if held.run not in self._cancelled:
            return False
        await self.outcomes.fail(held, Cancelled(f"run {held.run} was cancelled"))
        return True

    async def cancel(self, run: str) -> None:
        now = time.monotonic()
        self._cancelled[run] = now
        for old in [r for r, at in self._cancelled.items() if now - at > self.KEEP_S]:
            del self._cancelled[old]
        error = Cancelled(f"run {run} was cancelled")
        for queue in self.book.queues.values():
            for held in queue.remove_run(run):
                await self.outcomes.fail(held, error)
        for agent, waiting in list(self.book.unplaced.items()):
            self.book.unplaced[agent] = [h for h in waiting if h.run != run]
        self.book.paused.pop(run, None)
        for held in [h for h in self.book.held.values() if h.run == run and not h.dispatched]:
            await self.outcomes.fail(held, error)  # waiting: dependencies, instance, resume


class Deadlines(CallHook):
    """Calls past their deadline that have not started fail with `Timeout` (running ones are
    stopped by their host, which knows the deadline too)."""

    def __init__(self, node: str, book: Book, outcomes: Outcomes) -> None:
        self.node, self.book, self.outcomes = node, book, outcomes

    async def tick(self, now: float) -> None:
        late = [h for h in self.book.held.values() if h.deadline and h.deadline <= now and
                not h.dispatched]
        for held in late:
            self.book.unqueue(held)
            where = ("waiting for " + ",".join(sorted(held.waiting)) if held.waiting
                     else "queued")
            self.book.stats["timed_out"] += 1
            await self.outcomes.fail(held, Timeout(
                f"call {held.agent}.{held.method} passed its deadline while {where} on node "
                f"{self.node}", details={"future": held.future, "stuck": where,
                                         "node": self.node, "deadline": held.deadline}))


class Retries(CallHook):
    """The host's retry policy asked for another attempt (`Nalar-Status: retry`): the slot is
    freed now and the call placed again after `Retry-After`, still held and claimed."""

    def __init__(self, book: Book, outcomes: Outcomes) -> None:
        self.book, self.outcomes = book, outcomes

    async def after_done(self, held: Held, done: Done) -> bool:
        if done.status != "retry":
            return False
        self.outcomes.retry_later(held, done.retry_after or 0.0)
        return True
