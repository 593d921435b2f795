"""The run journal, stream NALAR_RUNS: `nalar.run.<run>.<event>`, read by the API, SSE and audit."""

from __future__ import annotations

import time
from typing import Any

from nalar_common.bus import Bus, StoredMsg
from nalar_common.envelope import Envelope


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


async def record(bus: Bus, run: str, event: str, body: dict[str, Any], *,
                 acked: bool = False, msg_id: str | None = None) -> None:
    """Append an event. `acked` waits for the stream to store it (run boundaries); per-future
    events are published without waiting, off the call's critical path."""
    payload = Envelope("event", {"event": event, "run": run, "ts": time.time(), **body}).encode()
    subject = bus.names.run_event(run, event)
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    if acked:
        await bus.js.publish(subject, payload, headers=headers)
    else:
        await bus.nc.publish(subject, payload, headers=headers)


def decode(msg: StoredMsg) -> dict[str, Any]:
    return Envelope.decode(msg.data, expect="event").body


async def is_waiting(bus: Bus, run: str) -> bool:
    """Whether the run's driver left to wait for a signal and has not started again since."""
    last = await bus.multi_last(bus.names.runs_stream, [
        bus.names.run_event(run, Event.WAITING), bus.names.run_event(run, Event.STARTED)])
    waiting = last.get(bus.names.run_event(run, Event.WAITING))
    started = last.get(bus.names.run_event(run, Event.STARTED))
    return waiting is not None and (started is None or waiting.seq > started.seq)
