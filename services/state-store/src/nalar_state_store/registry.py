"""The run registry: every run's `created` event (durable consumer `state_store_registry`) puts
the run in its session's registry, its deadline in `RunDeadlines` and its start check in
`RunStarts`. The events that arrive while a batch is written go in the next one, so a busy
front door costs one Redis round trip per batch instead of four per run; each event is acked
only once its batch is written (a failed batch is redelivered: every write is idempotent)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nalar_common.bus import Bus
from nalar_common.dlq import dead_letter
from nalar_common.envelope import Envelope
from nalar_common.errors import MalformedMessage
from nalar_common.logging import get_logger
from nalar_common.state import SessionStore, session_index_key
from nats.aio.msg import Msg
from redis.asyncio.client import Pipeline

from nalar_state_store.deadlines import RunDeadlines
from nalar_state_store.starts import RunStarts

log = get_logger(__name__)

MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class Created:
    msg: Msg
    run: str
    session: str
    workflow: str
    ts: float
    deadline: float | None


class RunRegistry:
    def __init__(self, bus: Bus, store: SessionStore, deadlines: RunDeadlines,
                 starts: RunStarts, session_ttl_s: float | None) -> None:
        self.bus, self.store = bus, store
        self.deadlines, self.starts, self.session_ttl_s = deadlines, starts, session_ttl_s
        self.registered = 0
        self._pending: list[Msg] = []
        self._wake = asyncio.Event()

    async def on_created(self, msg: Msg) -> None:
        """The consumer's callback: queue the event for the next batch."""
        self._pending.append(msg)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    await self.write(batch)
                except Exception as exc:  # NATS away (a dead letter, an ack): redelivered
                    log.warning("registry.batch_failed", error=str(exc), events=len(batch))

    async def write(self, batch: list[Msg]) -> int:
        """Write a batch of `created` events; the number registered."""
        runs = [c for c in [await self._read(m) for m in batch] if c is not None]
        if not runs:
            return 0
        try:
            async with self.store.r.pipeline(transaction=False) as pipe:
                for c in runs:
                    await self._register(pipe, c)
                    if c.deadline is not None:
                        self.deadlines.add_to(pipe, c.run, c.deadline)
                    # its driver starts, even if its gateway died (unless heard starting)
                    self.starts.add_to(pipe, c.run, c.ts)
                await pipe.execute()
        except Exception as exc:  # Redis down: let JetStream redeliver
            log.warning("registry.write_failed", error=str(exc), runs=len(runs))
            for c in runs:
                await c.msg.nak(delay=1)
            return 0
        for c in runs:
            await c.msg.ack()
        self.registered += len(runs)
        return len(runs)

    async def _register(self, pipe: Pipeline, c: Created) -> None:
        """`SessionStore.register_run(..., ttl_s=...)` queued on the batch's pipeline: the
        same index entry and the same script, with the same keys and arguments."""
        ttl = self.session_ttl_s
        names = self.store.names
        if ttl is not None and ttl > 0:
            pipe.zadd(session_index_key(names), {c.session: c.ts + ttl}, gt=True)
        # the script register_run runs (SessionStore keeps it), queued on the pipeline
        await self.store._register(
            keys=[names.session_key(c.session, "meta"), names.session_key(c.session, "runs")],
            args=[c.run, c.workflow, repr(float(c.ts)), "",
                  repr(float(ttl)) if ttl is not None and ttl > 0 else ""],
            client=pipe)

    async def _read(self, msg: Msg) -> Created | None:
        try:
            body = Envelope.decode(msg.data, expect="event").body
            deadline = body.get("deadline")
            return Created(msg, run=str(body["run"]), session=str(body["session_id"]),
                           workflow=str(body.get("workflow", "")), ts=float(body["ts"]),
                           deadline=float(deadline) if deadline is not None else None)
        except (MalformedMessage, KeyError, ValueError, TypeError) as exc:
            await dead_letter(self.bus, service="state-store", subject=msg.subject,
                              data=msg.data, headers=msg.headers,
                              reason=f"unreadable created event: {exc}", stream=True)
            await msg.term()
            return None
