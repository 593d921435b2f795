"""The state store's driver call for a run is the gateway's, byte for byte but its timestamp:
same subject pattern, headers and message id (`Runtime.submit_root` vs
`nalar_state_store.starts.driver_call`), so JetStream drops one as the other's duplicate."""

from __future__ import annotations

import time
import uuid

from driver_calls import runtime_with_a_driver
from nalar_common.bus import Bus
from nalar_common.envelope import Envelope
from nalar_common.subjects import DRIVER_AGENT
from nalar_state_store.starts import driver_call


async def test_state_store_driver_call_is_the_gateways(bus: Bus) -> None:
    async with runtime_with_a_driver(bus) as runtime:
        run, deadline = uuid.uuid4().hex, time.time() + 60
        await runtime.submit_root(run=run, session="s1", workflow="echo",
                                  input={"value": [1, "a"]}, priority=2, deadline=deadline)
        stored = await bus.js.get_msg(bus.names.calls_stream, seq=1,
                                      subject=bus.names.call("n1", DRIVER_AGENT), next=True,
                                      direct=True)
        ours = driver_call(run, {"session_id": "s1", "workflow": "echo",
                                 "input": {"value": [1, "a"]}, "priority": 2,
                                 "deadline": deadline})
        theirs = {k: v for k, v in stored.headers.items() if k.startswith(("Nalar-", "Nats-"))
                  and k not in ("Nalar-Policy-Rev", "Nats-Subject", "Nats-Sequence",
                                "Nats-Time-Stamp", "Nats-Stream", "Nats-Num-Pending",
                                "Nats-Last-Sequence")}
        assert ours.headers() == theirs
        body = Envelope.decode(stored.data, expect="call").body
        body.pop("created_at")
        mine = Envelope.decode(ours.encode(), expect="call").body
        mine.pop("created_at")
        assert mine == body

