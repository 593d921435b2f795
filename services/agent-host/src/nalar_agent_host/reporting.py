"""What a host says about a call: its result (write-once in NALAR_FUTURES, retried while the
bus is away), its journal entries (resolved, duplicate, finished, LLM requests, streamed
text), and the `done` that frees its slot at the local controller."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from nalar.hosting import CallContext
from nalar_common.bus import Bus
from nalar_common.calls import CallSpec, publish_result
from nalar_common.errors import NalarError
from nalar_common.futures import FutureWaiter
from nalar_common.journal import Event, record
from nalar_common.logging import get_logger
from nalar_common.subjects import ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nalar_common.wire import Done, DoneStatus

log = get_logger(__name__)

MAX_RECORDED_TEXT = 256 * 1024  # longer LLM answers are journaled without their text
RESULT_RETRY_MAX_S = 5.0


class Reporter:
    def __init__(self, bus: Bus, host_id: str, waiter: FutureWaiter) -> None:
        self.bus, self.host_id, self.waiter = bus, host_id, waiter
        self.tg: asyncio.TaskGroup | None = None  # set when the host starts

    async def result(self, headers: dict[str, str], value: Any, error: NalarError | None,
                     executor: str, timings: dict[str, float],
                     usage: dict[str, Any] | None = None) -> bool:
        """Resolve the future, retrying while the bus is unavailable: the write is idempotent
        (message id plus write-once subject), and a call must not finish without its result.
        False when an earlier attempt had resolved it."""
        delay = 0.1
        while True:
            try:
                return await publish_result(self.bus, headers, value=value, error=error,
                                            executor=executor, timings=timings, usage=usage)
            except Exception as exc:
                log.warning("result.publish_retry", run_id=headers.get(H.RUN),
                            future_id=headers.get(H.FUTURE), error=str(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESULT_RETRY_MAX_S)

    async def resolved(self, call: CallSpec, headers: dict[str, str], executor: str,
                       error: NalarError | None, published: bool,
                       entry: dict[str, Any]) -> None:
        """The call's journal entry (and `duplicate` when its result was dropped)."""
        if not published:
            await record(self.bus, call.run, Event.DUPLICATE, {
                "future": call.future, "attempt": int(headers.get(H.ATTEMPT) or 1),
                "executor": executor})
        await record(self.bus, call.run, Event.FUTURE_RESOLVED, {
            "future": call.future, "agent": call.agent, "method": call.method,
            "status": "ok" if error is None else "error", "executor": executor, **entry,
            **({"code": error.error_code} if error is not None else {})})

    async def finished(self, run: str, error: NalarError | None, published: bool) -> None:
        """The journal's `finished` event, once per run, from the result that was stored
        (which is an earlier attempt's when this one's was a duplicate)."""
        outcome: dict[str, Any] = {"status": "succeeded"}
        if published:
            if error is not None:
                outcome = {"status": "failed", "error": error.to_wire()}
        else:
            stored = await self.waiter.get(run, ROOT_FUTURE)
            err = stored.error() if stored is not None else None
            if err is not None:
                outcome = {"status": "failed", "error": err.to_wire()}
        await record(self.bus, run, Event.FINISHED, outcome, acked=True,
                     msg_id=f"{run}.finished")

    async def done(self, reply: str, headers: dict[str, str], token: str, executor: str,
                   status: DoneStatus, usage: dict[str, Any] | None = None,
                   retry_after: float | None = None) -> None:
        """Tell the local controller the call is over, so it acks it and frees the slot; the
        tokens it used feed the controller's work estimates and migration costs."""
        tokens = context = None
        if usage and usage.get("llm"):
            last = usage["llm"][-1]
            tokens = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
            context = int(last.get("prompt_tokens", 0)) + int(last.get("completion_tokens", 0))
        done = Done(run=headers.get(H.RUN, ""), future=headers.get(H.FUTURE, ""),
                    dispatch=token, status=status, instance=executor, retry_after=retry_after,
                    tokens=tokens, context_tokens=context)
        await self.bus.nc.publish(reply, b"", headers=done.encode())

    # -- what a call says while it runs ---------------------------------------------------
    def sinks(self, call: CallSpec, ctx: CallContext) -> None:
        """Each LLM request of the call becomes an `llm` event of its run (the request's
        digest, its usage and the answer: what a replay serves instead of asking again);
        streamed text becomes `token` events (SSE shows them live). Bound per call, cheaply:
        most calls make no LLM request."""
        ctx.on_llm = functools.partial(self._on_llm, call)
        ctx.on_token = functools.partial(self._on_token, call)

    def _on_llm(self, call: CallSpec, n: int, request_digest: str, completion: Any) -> None:
        assert self.tg is not None
        text = completion.text if len(completion.text) <= MAX_RECORDED_TEXT else None
        self.tg.create_task(self._record_quietly(call.run, Event.LLM, {
            "future": call.future, "n": n, "digest": request_digest,
            "model": completion.model, "engine": completion.engine,
            **completion.usage(), "text": text, "truncated": text is None,
            **({"tool_calls": [t.to_dict() for t in completion.tool_calls]}
               if completion.tool_calls else {}),
            "finish_reason": completion.finish_reason or None}))

    def _on_token(self, call: CallSpec, piece: str) -> None:
        assert self.tg is not None
        self.tg.create_task(self._record_quietly(call.run, Event.TOKEN, {
            "future": call.future, "agent": call.agent, "text": piece}))

    async def _record_quietly(self, run: str, event: str, body: dict[str, Any]) -> None:
        try:
            await record(self.bus, run, event, body)
        except Exception as exc:
            log.warning("journal.publish_failed", run_id=run, kind=event, error=str(exc))
