"""The run journal, stream NALAR_RUNS: `nalar.run.<run>.<event>`, read by the API, SSE and audit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nalar_common.bus import Bus, StoredMsg
from nalar_common.envelope import Envelope
from nalar_common.errors import Timeout


class Event:
    CREATED = "created"
    STARTED = "started"
    FUTURE_CREATED = "future_created"
    FUTURE_RESOLVED = "future_resolved"
    FINISHED = "finished"
    SIGNAL = "signal"  # a driver declared a signal it awaits: {name, future, deadline}
    WAITING = "waiting"  # a driver left its slot to wait for a signal
    SIGNALLED = "signalled"  # a signal's value arrived
    TOKEN = "token"  # a piece of text an agent streamed from its LLM
    MIGRATED = "migrated"  # a queued call moved to another instance by policy
    RETRYING = "retrying"  # a call failed with an error its retry policy retries
    DEAD_LETTERED = "dead_lettered"  # a call was moved to the dead-letter stream
    DUPLICATE = "duplicate"  # a superseded attempt's result was dropped
    PAUSED = "paused"  # a guardrail with action `pause` stopped a call: the run waits
    RESUMED = "resumed"  # the run's `resume` signal came: the limits that paused it are lifted
    GUARDRAIL = "guardrail"  # a guardrail rejected a call or aborted the run
    LLM = "llm"  # one LLM request of a call: its digest, usage and answer (served in replays)
    REPLAYED = "replayed"  # a replay served a call from the original run's journal
    GRAPH = "graph"  # LangGraph progress: a stream mode's chunk, a task, an interrupt
    EXECUTION = "execution"  # an agent graph's Task or Plan execution record


ACKED_RETRY_S = 60.0


async def record(bus: Bus, run: str, event: str, body: dict[str, Any], *,
                 acked: bool = False, msg_id: str | None = None) -> None:
    """Append an event. `acked` waits for the stream to store it (run boundaries); per-future
    events are published without waiting, off the call's critical path."""
    payload = Envelope("event", {"event": event, "run": run, "ts": time.time(), **body}).encode()
    subject = bus.names.run_event(run, event)
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    if not acked:
        await bus.nc.publish(subject, payload, headers=headers)
        return
    give_up = time.monotonic() + ACKED_RETRY_S
    delay = 0.2
    while True:  # NATS may be restarting: keep trying for a while (run boundaries matter)
        try:
            await bus.js.publish(subject, payload, headers=headers, timeout=5)
            return
        except Exception:
            if time.monotonic() + delay > give_up:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def decode(msg: StoredMsg) -> dict[str, Any]:
    return Envelope.decode(msg.data, expect="event").body


async def is_waiting(bus: Bus, run: str) -> bool:
    """Whether the run's driver left to wait for a signal and has not started again since."""
    last = await bus.multi_last(bus.names.runs_stream, [
        bus.names.run_event(run, Event.WAITING), bus.names.run_event(run, Event.STARTED)])
    waiting = last.get(bus.names.run_event(run, Event.WAITING))
    started = last.get(bus.names.run_event(run, Event.STARTED))
    return waiting is not None and (started is None or waiting.seq > started.seq)


async def where_stuck(bus: Bus, run: str, limit: int = 20) -> list[dict[str, Any]]:
    """The run's futures that have not resolved, each with where it was last seen (the node it
    was sent to, a retry it waits for, the dead letter it became, the signal its driver waits
    for): what a run that timed out reports."""
    n = bus.names
    seen: dict[str, dict[str, Any]] = {}
    async for m in bus.iter_stream(n.runs_stream, n.run_events(run), follow=False):
        ev = decode(m)
        kind, fut = ev.get("event"), str(ev.get("future") or "")
        if kind == Event.CREATED:
            seen["0"] = {"future": "0", "agent": "_driver", "method": ev.get("workflow"),
                         "state": "queued"}
        elif kind == Event.STARTED and "0" in seen:
            seen["0"].update(state="running", host=ev.get("host"), node=ev.get("node"))
        elif kind == Event.WAITING and "0" in seen:
            seen["0"]["state"] = f"waiting for signal {ev.get('signal')}"
        elif kind == Event.FUTURE_CREATED:
            seen[fut] = {"future": fut, "agent": ev.get("agent"), "method": ev.get("method"),
                         "node": ev.get("node"), "state": "queued or running"}
        elif kind == Event.MIGRATED and fut in seen:
            seen[fut].update(node=ev.get("node"), state=f"moved to {ev.get('to')}")
        elif kind == Event.RETRYING and fut in seen:
            seen[fut]["state"] = f"retrying after attempt {ev.get('attempt')}"
        elif kind == Event.DEAD_LETTERED and fut in seen:
            seen[fut].update(state="dead-lettered", dlq_id=ev.get("dlq_id"),
                             reason=ev.get("reason"))
    resolved = await bus.multi_last(n.futures_stream, [n.futures_of_run(run)])
    out = []
    for fut, row in seen.items():
        stored = resolved.get(n.future(run, fut))
        if stored is None:
            out.append(row)
        elif stored.headers.get("Nalar-Status") == "error" and _timed_out(stored):
            out.append({**row, "state": "timed out at the deadline"})
    return out[:limit]


def _timed_out(stored: StoredMsg) -> bool:
    try:
        error = Envelope.decode(stored.data, expect="result").body.get("error") or {}
    except Exception:
        return False
    return bool(error.get("code") == "timeout")


async def deadline_error(bus: Bus, run: str, deadline: float | None) -> Timeout:
    """The error a run resolves to when its deadline passes: where it was stuck."""
    stuck = await where_stuck(bus, run)
    where = "; ".join(f"{s['agent']}.{s['method']} (future {s['future']}): {s['state']}"
                      for s in stuck if s["future"] != "0")[:1000]
    where = f"stuck at {where}" if where else "no call pending: stuck in its workflow code"
    return Timeout(f"run {run} passed its deadline; {where}",
                   details={"deadline": deadline, "stuck": stuck})
