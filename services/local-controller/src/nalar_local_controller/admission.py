"""Admitting calls: a JetStream message becomes a held call (or is refused, answered from the
stream, dead-lettered); then its run's facts, the hooks before admission (cancellation,
authorization, guardrails), its session's pin, its dependencies, and placement."""

from __future__ import annotations

import functools
from collections.abc import Container
from typing import Any

from nalar_common.errors import Cancelled, DependencyFailed
from nalar_common.futures import FutureResult, FutureWaiter
from nalar_common.logging import get_logger
from nalar_common.subjects import Headers as H

from nalar_local_controller import placement
from nalar_local_controller.book import Book, Tasks
from nalar_local_controller.dispatch import Dispatcher
from nalar_local_controller.held import CallState, Held, header_float, header_int
from nalar_local_controller.hooks import Hooks
from nalar_local_controller.outcomes import Outcomes
from nalar_local_controller.pins import Pins
from nalar_local_controller.runs import RunBook, RunFacts
from nalar_local_controller.settings import LocalControllerSettings

log = get_logger(__name__)

REQUIRED = (H.RUN, H.FUTURE, H.AGENT, H.METHOD)
PLACEABLE = frozenset({CallState.ADMITTING, CallState.WAITING})  # not yet queued or sent
ADMIT_AGAIN_S = 2.0


class Admission:
    def __init__(self, book: Book, runs: RunBook, hooks: Hooks, pins: Pins,
                 waiter: FutureWaiter, dispatcher: Dispatcher, outcomes: Outcomes,
                 tasks: Tasks, settings: LocalControllerSettings,
                 cancelled: Container[str] = ()) -> None:
        self.book, self.runs, self.hooks, self.pins = book, runs, hooks, pins
        self.cancelled = cancelled  # runs cancelled here
        self.waiter, self.dispatcher, self.outcomes = waiter, dispatcher, outcomes
        self.tasks, self.settings = tasks, settings

    async def on_call(self, msg: Any) -> None:
        """A call for this node from the calls stream."""
        headers = dict(msg.headers or {})
        missing = [h for h in REQUIRED if not headers.get(h)]
        if missing or len(msg.data) > self.settings.max_call_bytes:
            await self.outcomes.reject_malformed(
                msg, headers, f"missing headers {missing}" if missing
                else f"call of {len(msg.data)} bytes is too large")
            return
        held = self._held_from(msg, headers)
        existing = self.book.held.get(held.key)
        if existing is not None:
            existing.msgs.append(msg)  # the same call again: acked together when it is done
            return
        if held.run in self.cancelled:  # no facts needed: refused before anything else
            self.book.held[held.key] = held
            await self.outcomes.fail(held, Cancelled(f"run {held.run} was cancelled"))
            return
        if held.deliveries > 1:  # a controller died holding it: it may have run already
            if await self._already_resolved(held):
                await msg.ack()
                return
            if held.deliveries > self.settings.max_deliver:
                await self.outcomes.dead_letter_msg(
                    msg, headers, held.deliveries,
                    f"delivered {held.deliveries} times without finishing (max_deliver)")
                return
            headers[H.ATTEMPT] = str(header_int(headers.get(H.ATTEMPT), 1)
                                     + held.deliveries - 1)
        held.priority = placement.priority(held, self.dispatcher.view.snapshot)
        if headers.get(H.INSTANCE) in self.book.queues:
            held.pinned = headers[H.INSTANCE]  # migrated here for that instance
        self.book.held[held.key] = held
        self.book.stats["admitted"] += 1
        await self.admit(held)

    @staticmethod
    def _held_from(msg: Any, headers: dict[str, str]) -> Held:
        priority = header_int(headers.get(H.PRIORITY), 0)
        redeliveries = msg.metadata.num_delivered - 1 if msg.metadata else 0
        return Held(msgs=[msg], data=msg.data, headers=headers, run=headers[H.RUN],
                    future=headers[H.FUTURE], agent=headers[H.AGENT],
                    session=headers.get(H.SESSION, ""), priority=priority,
                    deps=list(dict.fromkeys(d for d in (headers.get(H.DEPS) or "").split(",")
                                            if d)),
                    base_priority=priority, deliveries=redeliveries + 1,
                    deadline=header_float(headers.get(H.DEADLINE)))

    async def _already_resolved(self, held: Held) -> bool:
        try:
            return await self.waiter.get(held.run, held.future) is not None
        except Exception:
            return False

    async def admit(self, held: Held) -> None:
        """Its run's facts, the hooks before admission, the session's pin, dependencies."""
        try:
            facts = await self.runs.get(held.run)
        except Exception as exc:  # NATS away: keep the call (claimed), decide again later
            self.admit_later(held, f"run facts: {exc}")
            return
        held.replay_of = facts.replay_of if facts.replays(held.future) else ""
        if await self.hooks.before_admit(held, facts):
            return
        try:
            if held.session and self.pins.is_stateful(held.agent):
                pinned = await self.pins.pin(held, self.dispatcher.choose)
                node = self.pins.node_of(pinned) if pinned else None
                if node is not None and node != self.dispatcher.node:
                    await self.dispatcher.forward(held, node)  # its session lives there
                    return
                held.pinned = pinned
            if held.deps:
                held.state = CallState.WAITING
                held.waiting = set(held.deps)
                on_resolved = functools.partial(self._dep_resolved, held)
                for dep in held.deps:
                    await self.waiter.watch(held.run, dep, on_resolved)
                return
        except Exception as exc:  # the pins bucket or the futures stream away: again later
            self.admit_later(held, f"pin or dependencies: {exc}")
            return
        await self.place(held, facts)

    def admit_later(self, held: Held, why: str) -> None:
        """Admission could not decide (NATS or Redis away): keep the call claimed and try
        again, without spending one of its deliveries."""
        log.warning("call.admit_retry", run_id=held.run, future_id=held.future, reason=why)
        self.tasks.later(ADMIT_AGAIN_S, self.book, held, self.admit)

    def _dep_resolved(self, held: Held, result: FutureResult) -> None:
        if not self.book.holds(held):
            return
        held.waiting.discard(result.future)
        held.dep_results[result.future] = result
        if not result.ok:  # ended now, so no other dependency's answer places it
            cause = result.error()
            if self.book.end(held):
                self.tasks.spawn(self.outcomes.failed(held, DependencyFailed(
                    f"argument future {result.future} failed: "
                    f"{cause.message if cause else ''}",
                    details={"dependency": result.future,
                             "cause": cause.to_wire() if cause else None})))
        elif not held.waiting:
            self.tasks.spawn(self.place(held))

    async def place(self, held: Held, facts: RunFacts | None = None) -> None:
        """The hooks before placement (a replay may answer it), then queue and dispatch now,
        without waiting for the outbox task. Only a call still held and not yet placed: a
        cancel or a deadline may have ended it while the hooks were asked. `facts`: its run's,
        when admission has them at hand (a call whose arguments came later reads them)."""
        if facts is None:
            try:
                facts = await self.runs.get(held.run)
            except Exception as exc:
                log.warning("call.place_retry", run_id=held.run, future_id=held.future,
                            reason=f"run facts: {exc}")
                self.tasks.later(ADMIT_AGAIN_S, self.book, held, self.place)
                return
        if not self._placeable(held) or await self.hooks.before_place(held, facts):
            return
        if self._placeable(held):
            self.dispatcher.place(held)
            await self.dispatcher.flush()

    def _placeable(self, held: Held) -> bool:
        return self.book.holds(held) and held.state in PLACEABLE
