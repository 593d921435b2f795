"""The agent host's side of guardrails: before each LLM request of a run that guardrails bind,
ask the node's local controller (which counts and decides), and tell it afterwards what the
request used. Agent code never sees this; `nalar.llm` does it around every engine call.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from nalar_common.errors import Unavailable
from nalar_common.logging import get_logger
from nalar_common.wire import GuardAnswer, GuardReserve, GuardSettle

from nalar.engines.base import Completion, LLMRequest, model_of, prompt_tokens

log = get_logger(__name__)

ASK_TIMEOUT_S = 5.0
PAUSE_RECHECK_S = 2.0  # a paused request asks again this often (and at once on `resume`)


class Reservation:
    """What the controller reserved for one request ("": nothing to settle)."""

    def __init__(self, ident: str, model: str = "") -> None:
        self.ident, self.model = ident, model


class GuardClient:
    def __init__(self, bus: Any, node: str, *, run: str, future: str, session: str,
                 agent: str, method: str) -> None:
        self.bus, self.node = bus, node
        self.run, self.future = run, future
        self._ask_for = GuardReserve(run=run, future=future, session=session, agent=agent,
                                     method=method, prompt_tokens=0, max_tokens=0)

    async def before(self, engine: Any, request: LLMRequest) -> Reservation:
        """Room for the request's worst case; raises what stops it (`GuardrailExceeded`,
        `Cancelled` when the run was aborted), and waits while the run is paused."""
        ask = replace(self._ask_for, model=model_of(engine),
                      prompt_tokens=prompt_tokens(engine, request),
                      max_tokens=request.max_tokens)
        resumed = asyncio.Event()

        async def wake(_msg: Any) -> None:
            resumed.set()

        sub = None
        try:
            while True:
                answer = await self._ask(ask)
                if answer.ok:
                    return Reservation(answer.reservation, ask.model)
                if answer.action != "pause":
                    error = answer.exception()
                    if error is not None:
                        raise error
                    raise Unavailable("guardrails could not be checked: "
                                      f"{answer.details.get('reason', '')}")
                if sub is None:  # paused: wait for the run's resume signal
                    ask = replace(ask, again=True)  # the controller journaled the pause once
                    sub = await self.bus.nc.subscribe(self.bus.names.resume(self.run),
                                                      cb=wake)
                    log.info("llm.paused", run_id=self.run, future_id=self.future,
                             **answer.details)
                try:
                    await asyncio.wait_for(resumed.wait(), PAUSE_RECHECK_S)
                except TimeoutError:
                    pass
                resumed.clear()
        finally:
            if sub is not None:
                await sub.unsubscribe()

    async def after(self, reservation: Reservation, completion: Completion | None) -> None:
        """Count what the request used instead of its worst case (nothing if it failed)."""
        if not reservation.ident:
            return
        settle = GuardSettle(settle=reservation.ident, model=reservation.model,
                             prompt_tokens=completion.prompt_tokens if completion else 0,
                             completion_tokens=completion.completion_tokens if completion else 0,
                             ok=completion is not None)
        try:  # no answer awaited: off the request's path
            await self.bus.nc.publish(self.bus.names.guardrail(self.node), settle.encode())
        except Exception as exc:  # its worst case stays counted: never under-counts
            log.warning("guardrails.settle_failed", run_id=self.run, error=str(exc))

    async def _ask(self, ask: GuardReserve) -> GuardAnswer:
        try:
            msg = await self.bus.nc.request(self.bus.names.guardrail(self.node), ask.encode(),
                                            timeout=ASK_TIMEOUT_S)
        except Exception as exc:
            raise Unavailable(f"the local controller of node {self.node} did not answer "
                              f"a guardrail check: {exc}") from exc
        return GuardAnswer.decode(msg.data)
