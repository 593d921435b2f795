"""A graph's progress in its run's journal: events of kind `graph` (subject
`nalar.run.<run>.graph`), served by `GET /v1/runs/{id}/events` and the journal like every
other event. Each has a `mode` and a `key` (what makes it unique in the run):

| mode | when | body |
|---|---|---|
| `task` | a node's future is made (the driver) | `node`, `step`, `future` |
| `updates` | a node finished: what it returned | `node`, `step`, `data` |
| `values` | a super-step finished: the whole state | `step`, `data` |
| `checkpoint` | LangGraph saved a checkpoint | `step`, `source`, `next` |
| `interrupt` | a node called `interrupt(value)` | `node`, `step`, `future`, `signal`, `value` |
| `custom` | a node wrote to `get_stream_writer()` (its host) | `node`, `step`, `future`, `data` |

LLM text a node streams (`nalar.llm` with streaming engines) is in the run's `token` events,
whose `future` the `task` event names. A driver that runs again (a lost host, a signal that
came) goes through the same steps: it reads the keys recorded already and records only
what is new, so each event is in the journal once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nalar_common.journal import Event, decode, record
from nalar_common.logging import get_logger

from nalar.context import CallContext

log = get_logger(__name__)

EVENT = Event.GRAPH
MAX_DATA_BYTES = 256 * 1024  # a bigger state or update is journaled as its size only


def _bus(ctx: CallContext) -> Any:
    """The bus to journal on (None in local mode: it has no journal)."""
    return getattr(ctx.runtime, "bus", None)


def _capped(body: dict[str, Any]) -> dict[str, Any]:
    for field in ("data", "value"):
        if field in body:
            size = len(json.dumps(body[field], default=str))
            if size > MAX_DATA_BYTES:
                body[field] = {"truncated": True, "bytes": size}
    return body


class GraphJournal:
    """The driver's side: records `graph` events of one run, each key once."""

    def __init__(self, ctx: CallContext) -> None:
        self.run = ctx.run
        self.bus = _bus(ctx)
        self.seen: set[str] = set()

    async def load(self) -> None:
        """The keys a driver that ran before recorded (none on a first run)."""
        if self.bus is None:
            return
        n = self.bus.names
        try:
            for m in await self.bus.read_all(n.runs_stream, n.run_event(self.run, EVENT)):
                self.seen.add(str(decode(m).get("key")))
        except Exception as exc:  # journaling is best effort: the graph goes on
            log.warning("graph.journal_read_failed", run_id=self.run, error=str(exc))

    async def emit(self, key: str, mode: str, **body: Any) -> None:
        if self.bus is None or key in self.seen:
            return
        self.seen.add(key)
        try:
            await record(self.bus, self.run, EVENT, _capped({"mode": mode, "key": key, **body}),
                         msg_id=f"{self.run}.{EVENT}.{key}")
        except Exception as exc:
            log.warning("graph.journal_failed", run_id=self.run, key=key, error=str(exc))


class HostWriter:
    """The host's side: `get_stream_writer()` of a node running in future `ctx.future`;
    each chunk a `custom` event. Callable from the event loop or a worker thread."""

    def __init__(self, ctx: CallContext, node: str, step: int) -> None:
        self.ctx, self.node, self.step = ctx, node, step
        self.bus = _bus(ctx)
        self.n = 0
        self.pending: list[Any] = []

    def __call__(self, chunk: Any) -> None:
        from nalar.langgraph.codec import to_json

        if self.bus is None:
            return
        self.n += 1
        body = _capped({"mode": "custom", "key": f"custom:{self.ctx.future}:{self.n}",
                        "node": self.node, "step": self.step, "future": self.ctx.future,
                        "data": to_json(chunk, "custom chunk")})
        coro = record(self.bus, self.ctx.run, EVENT, body,
                      msg_id=f"{self.ctx.run}.{EVENT}.{body['key']}")
        loop = self.ctx.runtime.loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self.pending.append(loop.create_task(coro))
        else:
            self.pending.append(asyncio.run_coroutine_threadsafe(coro, loop))

    async def flush(self) -> None:
        """Wait for the chunks written so far (on the loop), so they come before the node's
        update in the journal."""
        for p in self.pending:
            try:
                await (p if isinstance(p, asyncio.Task) else asyncio.wrap_future(p))
            except Exception as exc:
                log.warning("graph.custom_failed", run_id=self.ctx.run, error=str(exc))
        self.pending.clear()

    def flush_sync(self, timeout: float = 5.0) -> None:
        """As `flush`, from a worker thread."""
        for p in self.pending:
            try:
                p.result(timeout)
            except Exception as exc:
                log.warning("graph.custom_failed", run_id=self.ctx.run, error=str(exc))
        self.pending.clear()


def graph_state(events: Iterable[Mapping[str, Any]],
                signalled: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """What `graph.get_state()` says, from a run's events (`GET /v1/runs/{id}/events` or the
    journal's `events`): the state after the last super-step (`values`), the step, the nodes
    that run next (`next`) and the interrupts still waiting for their signal, each with its
    signal's name and the value the node gave `interrupt()`."""
    out: dict[str, Any] = {"values": None, "step": None, "next": [], "interrupts": []}
    interrupts: dict[str, dict[str, Any]] = {}
    answered: set[str] = set()
    for ev in events:
        if ev.get("event") == "signalled":
            answered.add(str(ev.get("signal")))
        if ev.get("event") != EVENT:
            continue
        mode = ev.get("mode")
        if mode == "values":
            out["values"] = ev.get("data")
        elif mode == "checkpoint":
            out["step"], out["next"] = ev.get("step"), list(ev.get("next") or [])
        elif mode == "interrupt":
            interrupts[str(ev.get("signal"))] = {k: ev.get(k) for k in (
                "signal", "node", "step", "future", "value")}
    out["interrupts"] = [i for name, i in interrupts.items() if name not in answered
                         and not (signalled is not None and signalled(name))]
    return out


__all__ = ["EVENT", "GraphJournal", "HostWriter", "graph_state"]
