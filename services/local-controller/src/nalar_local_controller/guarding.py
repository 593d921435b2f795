"""Guardrails on the call path: each call of a run that limits bind is checked before it runs
(reject, abort or pause its run); agent hosts ask here before each LLM request of such a run
and settle after; a paused run's calls go on at its `resume` signal."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, cast

from nalar_common.bus import Bus
from nalar_common.calls import cancel_run
from nalar_common.errors import NalarError
from nalar_common.guardrails import Breach
from nalar_common.journal import Event, record
from nalar_common.logging import get_logger
from nalar_common.subjects import Headers as H
from nalar_common.wire import GuardAction, GuardAnswer, GuardSettle, decode_guard

from nalar_local_controller.book import Book, Tasks
from nalar_local_controller.guard import CallGuard, Reserved
from nalar_local_controller.held import CallState, Held
from nalar_local_controller.hooks import CallHook
from nalar_local_controller.outcomes import Outcomes
from nalar_local_controller.runs import RunBook, RunFacts

log = get_logger(__name__)

PAUSED_RECHECK_S = 2.0  # calls a guardrail paused are checked again this often
RESERVATION_TTL_S = 3600.0  # an LLM request not settled by then keeps its worst case


class Guardrails(CallHook):
    def __init__(self, bus: Bus, node: str, guard: CallGuard, runs: RunBook, book: Book,
                 tasks: Tasks, outcomes: Outcomes) -> None:
        self.bus, self.node, self.guard, self.runs = bus, node, guard, runs
        self.book, self.tasks, self.outcomes = book, tasks, outcomes
        self.executor = f"lc:{node}"
        # wired by the controller: admit a call again (after a resume; when Redis is away)
        self.readmit: Callable[[Held], Coroutine[Any, Any, None]] | None = None
        self.admit_later: Callable[[Held, str], None] | None = None
        # LLM requests' reservations until their host settles them (worst case kept if never)
        self._reservations: dict[str, tuple[list[Reserved], str, float]] = {}
        self._last_recheck = time.monotonic()

    def revisions(self) -> dict[str, str]:
        return {"guardrails": self.guard.file.current().revision}

    async def before_admit(self, held: Held, facts: RunFacts) -> bool:
        """Check the call against its run's guardrails before it runs: True when one stopped
        it (failed, its run aborted, or paused until the run's `resume` signal)."""
        try:
            limits = self.guard.limits(facts)
            held.guarded = bool(limits)
            breach = await self.guard.admit(facts, limits, held.future, held.agent,
                                            held.method, held.session)
            if breach is None:
                if held.state is CallState.PAUSED:
                    held.state = CallState.ADMITTING  # its run was resumed
                return False
            was_paused = held.state is CallState.PAUSED
            still = was_paused and breach.limit.action == "pause"  # a recheck: said already
            error = None if still else await self.enforce(breach, facts, held.headers)
        except Exception as exc:  # Redis unreachable: nothing runs unchecked; try again
            assert self.admit_later is not None
            self.admit_later(held, f"guardrails: {exc}")
            return True
        if error is None:
            held.state = CallState.PAUSED
            waiting = self.book.paused.setdefault(held.run, [])
            if held not in waiting:  # a recheck of a call paused already
                waiting.append(held)
        else:
            await self.outcomes.fail(held, error)
        return True

    async def enforce(self, breach: Breach, facts: RunFacts, headers: dict[str, str],
                      quiet: bool = False) -> NalarError | None:
        """Act on a breach: the error that ends the call (`reject`; `abort` also ends the
        run), or None for `pause` (the run's journal says it waits for `resume`; `quiet`: a
        request asking again while paused, said already)."""
        lim = breach.limit
        if quiet and lim.action == "pause":
            return None
        self.book.stats["guardrail_stops"] += 1
        where = {"future": headers.get(H.FUTURE), "agent": headers.get(H.AGENT),
                 "method": headers.get(H.METHOD), "node": self.node}
        log.info("guardrail.breached", run_id=facts.run, guardrail=lim.name,
                 action=lim.action, value=breach.value, future_id=where["future"])
        if lim.action == "pause":
            await record(self.bus, facts.run, Event.PAUSED, {
                **breach.details(), **where, "signal": "resume",
                "message": f"{lim.describe()} paused the run: send its `resume` signal to "
                           "go on"}, acked=True, msg_id=f"{facts.run}.paused.{lim.name}")
            return None
        error = breach.error()
        await record(self.bus, facts.run, Event.GUARDRAIL,
                     {**breach.details(), **where, "message": error.message})
        if lim.action == "abort":
            await cancel_run(self.bus, facts.run, facts.session, facts.workflow, error,
                             self.executor)
        return error

    def resume(self, run: str) -> None:
        """A paused run may go on: its paused calls are checked again (the limits that
        paused it no longer bind it) and continue, each on its own."""
        for held in self.book.paused.pop(run, []):
            if self.book.holds(held):
                assert self.readmit is not None
                self.tasks.spawn(self.readmit(held))

    async def tick(self, now: float) -> None:
        """Paused calls are checked again every few seconds: a `resume` this controller did
        not hear (it was reconnecting; it came while the call was being paused) still lets
        them go on. Reservations never settled keep their worst case and are forgotten."""
        if time.monotonic() - self._last_recheck < PAUSED_RECHECK_S:
            return
        self._last_recheck = time.monotonic()
        for run in list(self.book.paused):
            self.resume(run)
        stale = time.monotonic() - RESERVATION_TTL_S
        for rid in [r for r, v in self._reservations.items() if v[2] < stale]:
            del self._reservations[rid]

    async def answer(self, data: bytes) -> GuardAnswer:
        """An agent host asks before an LLM request of a guarded run (and settles after)."""
        try:
            req = decode_guard(data)
            if isinstance(req, GuardSettle):
                held_for = self._reservations.pop(req.settle, None)
                if held_for is not None:
                    await self.guard.settle(held_for[0], held_for[1], req.prompt_tokens,
                                            req.completion_tokens, req.ok)
                return GuardAnswer(ok=True)
            facts = await self.runs.get(req.run)
            breach, held = await self.guard.reserve(facts, req.session, req.model,
                                                    req.prompt_tokens, req.max_tokens,
                                                    req.future)
            if breach is None:
                rid = ""
                if held:  # settled by id: a host names a reservation, never counters
                    rid = uuid.uuid4().hex
                    self._reservations[rid] = (held, req.model, time.monotonic())
                return GuardAnswer(ok=True, reservation=rid)
            headers = {H.FUTURE: req.future, H.AGENT: req.agent, H.METHOD: req.method}
            error = await self.enforce(breach, facts, headers, quiet=req.again)
            return GuardAnswer(ok=False, action=cast(GuardAction, breach.limit.action),
                               error=error.to_wire() if error else None,
                               details=breach.details())
        except Exception as exc:
            log.warning("guardrails.request_failed", error=str(exc))
            return GuardAnswer(ok=False, action="unavailable",
                               details={"reason": str(exc)[:300]})
