"""The gateway's driver call is `Runtime.submit_root`'s, byte for byte but its timestamp (and
so the state store's relay, pinned to `submit_root` by tests/test_run_start_contract.py): the
same subject, headers and message id, so JetStream stores one of them only."""

from __future__ import annotations

import time
import uuid
from typing import Any

from driver_calls import runtime_with_a_driver, stored_driver_calls
from nalar_common.bus import Bus
from nalar_common.envelope import Envelope
from nalar_common.journal import Event
from nalar_common.subjects import DRIVER_AGENT
from nalar_gateway.drivers import driver_spec, publish_driver_call

_STREAM_HEADERS = ("Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Stream",
                   "Nats-Num-Pending", "Nats-Last-Sequence")


async def test_the_gateways_driver_call_is_submit_roots(bus: Bus) -> None:
    async with runtime_with_a_driver(bus) as runtime:
        run, deadline = uuid.uuid4().hex, time.time() + 60
        spec = driver_spec(run, "s1", "echo", {"value": [1, "a"]}, priority=2,
                           deadline=deadline)
        assert await publish_driver_call(bus, runtime.view, spec) is False
        journal = await bus.js.subscribe(bus.names.run_event(run, Event.FUTURE_CREATED),
                                         stream=bus.names.runs_stream, ordered_consumer=True)
        ev = Envelope.decode((await journal.next_msg(timeout=5)).data, expect="event").body
        await journal.unsubscribe()
        assert (ev["future"], ev["agent"], ev["method"], ev["node"]) == \
            ("0", DRIVER_AGENT, "echo", "n1")
        # the same run started by the SDK: the same message id, dropped as a duplicate
        await runtime.submit_root(run=run, session="s1", workflow="echo",
                                  input={"value": [1, "a"]}, priority=2, deadline=deadline)
        [ours] = await stored_driver_calls(bus)
        assert ours.subject == bus.names.call("n1", DRIVER_AGENT)

        other = uuid.uuid4().hex  # what submit_root stores, for a run of its own
        await runtime.submit_root(run=other, session="s1", workflow="echo",
                                  input={"value": [1, "a"]}, priority=2, deadline=deadline)
        [_, theirs] = await stored_driver_calls(bus)

        def headers(msg: Any, run_id: str) -> dict[str, str]:
            return {k: v.replace(run_id, "<run>") for k, v in msg.headers.items()
                    if k not in _STREAM_HEADERS}

        def body(msg: Any) -> dict[str, Any]:
            b = Envelope.decode(msg.data, expect="call").body
            b.pop("created_at")
            b.pop("run")
            return dict(b)

        assert headers(ours, run) == headers(theirs, other)
        assert body(ours) == body(theirs)

