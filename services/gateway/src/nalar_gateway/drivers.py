"""The driver call of a new run (future `0`), as the gateway publishes it: the call, headers and
message id of `Runtime.submit_root` and of the state store's relay
(`nalar_state_store.starts.driver_call`), so JetStream stores one of them only. Unlike
`submit_root` it does not watch the run's futures: a request that waits for the run hears its
result through `RunResults`, and one that does not wait costs no subscription at all."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nalar_common.bus import Bus
from nalar_common.calls import CallSpec
from nalar_common.cluster import ClusterView
from nalar_common.errors import InvalidInput, NoInstance
from nalar_common.journal import Event, record
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE

PUBLISH_TIMEOUT_S = 5.0


def driver_spec(run: str, session: str, workflow: str, inputs: dict[str, Any], *,
                priority: int, deadline: float | None) -> CallSpec:
    return CallSpec(run=run, future=ROOT_FUTURE, session=session, agent=DRIVER_AGENT,
                    method=workflow, kwargs=inputs, priority=priority, deadline=deadline,
                    created_at=time.time())


async def publish_driver_call(bus: Bus, view: ClusterView, spec: CallSpec) -> bool:
    """Publish the call to a node with a driver instance, journal its `future_created` right
    behind it, and wait for the stream to store the call; True when the stream had it already
    (the state store sent it first). NoInstance when no node has a driver instance,
    InvalidInput when the input cannot be sent, anything else when NATS did not store it in
    time.

    Both go out on one connection, so the journal has `future_created` before the driver can
    start (it reads `created`, `future_created`, `started`, ... in order); the state store's
    start check does not take it for progress, since it precedes the call's ack."""
    node = view.choose_node(DRIVER_AGENT, spec.session)
    if node is None:
        raise NoInstance("no agent host is running: cannot start a workflow driver")
    try:
        payload = spec.encode()
    except TypeError as exc:
        raise InvalidInput(f"argument of {spec.agent}.{spec.method} cannot be sent: {exc}",
                           details={"agent": spec.agent, "method": spec.method}) from exc
    snap = view.snapshot
    ack = await bus.js.publish_async(bus.names.call(node, DRIVER_AGENT), payload,
                                     headers=spec.headers(snap.revision if snap else None))
    try:
        await record(bus, spec.run, Event.FUTURE_CREATED, {
            "future": spec.future, "agent": spec.agent, "method": spec.method,
            "deps": list(spec.deps), "parent": spec.parent, "session": spec.session,
            "node": node, "created_at": spec.created_at})
        stored = await asyncio.wait_for(ack, PUBLISH_TIMEOUT_S)
    finally:
        ack.cancel()  # given up on (or done): the client forgets it
    return bool(stored.duplicate)
