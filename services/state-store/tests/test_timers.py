"""Signal timers against a real nats-server: a timer is dropped (its journal event acked) as
soon as its signal is given, not kept until its deadline."""

from __future__ import annotations

import time
import uuid

from nalar_common.bus import Bus
from nalar_common.calls import publish_result
from nalar_common.cluster import ClusterView
from nalar_common.envelope import Envelope
from nalar_common.journal import Event, record
from nalar_common.subjects import Headers as H
from nalar_common.testing import wait_until
from nalar_state_store.timers import SignalTimers


async def test_a_given_signal_drops_its_timer(bus: Bus) -> None:
    await bus.ensure_topology()
    timers = SignalTimers(bus, ClusterView(bus))
    durable = await timers.subscribe()
    given = await timers.watch_given()
    try:
        runs = [uuid.uuid4().hex for _ in range(2)]
        for run in runs:
            await record(bus, run, Event.SIGNAL, {
                "name": "go", "future": "sig-go", "timeout": 3600.0,
                "deadline": time.time() + 3600}, acked=True)
        await wait_until(lambda: len(timers._deadline) == 2, what="both timers armed")
        # a `signalled` event whose signal is not stored drops nothing (its timer decides)
        await bus.nc.publish(bus.names.run_event(runs[1], Event.SIGNALLED), Envelope(
            "event", {"run": runs[1], "signal": "go", "future": "sig-go"}).encode())
        await publish_result(bus, {H.RUN: runs[0], H.FUTURE: "sig-go", H.AGENT: "_signal",
                                   H.METHOD: "go"}, value=True, executor="gateway")
        await record(bus, runs[0], Event.SIGNALLED, {"signal": "go", "future": "sig-go"},
                     acked=True)
        await wait_until(lambda: list(timers._deadline) == [(runs[1], "go")],
                         what="the given signal's timer dropped")
        info = await wait_until(lambda: durable.consumer_info(),
                                until=lambda i: i.num_ack_pending == 1,
                                what="its journal event acked, the other's still held")
        assert info.num_ack_pending == 1 and runs[0] not in str(timers._msgs)
    finally:
        await given.unsubscribe()
        await durable.unsubscribe()


async def test_a_timer_of_a_signal_given_already_is_not_armed(bus: Bus) -> None:
    """A `signal` event that reaches the store after its signal was given (the store was
    down, or the consumer lagged) is acked at once instead of held until its deadline."""
    await bus.ensure_topology()
    timers = SignalTimers(bus, ClusterView(bus))
    run = uuid.uuid4().hex
    await publish_result(bus, {H.RUN: run, H.FUTURE: "sig-go", H.AGENT: "_signal",
                               H.METHOD: "go"}, value=True, executor="gateway")
    await record(bus, run, Event.SIGNAL, {"name": "go", "future": "sig-go", "timeout": 60.0,
                                          "deadline": time.time() + 60}, acked=True)
    durable = await timers.subscribe()
    try:
        await wait_until(lambda: durable.consumer_info(),
                         until=lambda i: i.num_ack_pending == 0 and i.delivered.stream_seq > 0,
                         what="the event delivered and acked")
        assert not timers._deadline and not timers._msgs
    finally:
        await durable.unsubscribe()
