"""Run starts against a real nats-server and valkey-server: a run whose gateway died between its
`created` event and its driver call is started by the state store, once, and a run whose call
was published (or that progressed) never gets a second driver call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from driver_calls import stored_driver_calls
from nalar_common.bus import Bus
from nalar_common.calls import publish_result
from nalar_common.cluster import ClusterView, InstanceInfo
from nalar_common.envelope import Envelope
from nalar_common.journal import Event, record
from nalar_common.state import SessionStore
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE, Names
from nalar_common.subjects import Headers as H
from nalar_common.testing import wait_until
from nalar_state_store.starts import Outcome, RunStarts, driver_call


@pytest.fixture
async def store(redis_url: str, names: Names) -> AsyncIterator[SessionStore]:
    s = SessionStore.from_url(redis_url, names)
    yield s
    await s.close()


def view_with_driver(bus: Bus, node: str = "n1") -> ClusterView:
    view = ClusterView(bus)
    view.instances[f"{node}._driver"] = InstanceInfo(
        instance=f"{node}._driver", host="h1", node=node, agent=DRIVER_AGENT, concurrency=4,
        ts=time.time() + 3600)  # fresh for the whole test
    return view


async def created(bus: Bus, *, age_s: float = 0.0, **fields: Any) -> str:
    """Journal a run's `created` event the way `Gateway._launch` does."""
    run = uuid.uuid4().hex
    body = {"workflow": "echo", "session_id": "s-" + run[:6], "input": {"value": 7},
            "priority": 3, "deadline": time.time() + 600,
            "principal": {"name": "test", "roles": ["admin"], "tenant": "default"}, **fields}
    if age_s:
        body["ts"] = time.time() - age_s
    await record(bus, run, Event.CREATED, body, acked=True, msg_id=f"{run}.created")
    return run


async def test_starts_a_run_whose_gateway_died(bus: Bus, store: SessionStore) -> None:
    run = await created(bus)
    starts = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    assert await starts.check(run) == Outcome.STARTED
    [call] = await stored_driver_calls(bus)
    assert call.subject == bus.names.call("n1", DRIVER_AGENT)
    assert call.headers[H.MSG_ID] == f"{run}.0.c0.a1"  # the gateway's id: a repeat is dropped
    assert call.headers[H.RUN] == run and call.headers[H.FUTURE] == ROOT_FUTURE
    body = Envelope.decode(call.data, expect="call").body
    assert (body["method"], body["kwargs"], body["priority"]) == ("echo", {"value": 7}, 3)
    # checked again (a second state store, a retry): the copy has the same message id, and
    # JetStream drops it (its `future_created` alone is not progress: see below)
    assert await starts.check(run) == Outcome.DUPLICATE
    assert len(await stored_driver_calls(bus)) == 1


async def test_a_published_call_within_the_window_is_dropped_as_a_duplicate(
        bus: Bus, store: SessionStore) -> None:
    """The gateway published and died before journalling anything else: our publish has its
    message id, and JetStream drops it."""
    run = await created(bus)
    spec = driver_call(run, {"session_id": "s", "workflow": "echo", "input": {"value": 7}})
    await bus.js.publish(bus.names.call("n2", DRIVER_AGENT), spec.encode(),
                         headers=spec.headers())
    starts = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    assert await starts.check(run) == Outcome.DUPLICATE
    assert len(await stored_driver_calls(bus)) == 1


async def test_a_journaled_call_that_was_not_stored_is_sent(bus: Bus, store: SessionStore) -> None:
    """A gateway journals the driver call's `future_created` right behind the call, before its
    ack: a call the stream never stored (the gateway died, the publish failed) leaves it
    behind, and the run must still start. One that was stored is dropped as a duplicate."""
    starts = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    lost, sent = await created(bus), await created(bus)
    for run in (lost, sent):
        await record(bus, run, Event.FUTURE_CREATED, {
            "future": ROOT_FUTURE, "agent": DRIVER_AGENT, "method": "echo", "node": "n1"},
            acked=True)
    spec = driver_call(sent, {"session_id": "s", "workflow": "echo"})
    await bus.js.publish(bus.names.call("n1", DRIVER_AGENT), spec.encode(),
                         headers=spec.headers())
    assert await starts.check(lost) == Outcome.STARTED
    assert await starts.check(sent) == Outcome.DUPLICATE
    assert sorted(c.headers[H.RUN] for c in await stored_driver_calls(bus)) == sorted([lost, sent])


async def test_past_the_window_a_queued_call_is_found(bus: Bus, store: SessionStore) -> None:
    """Checked long after the gateway's publish (the window has passed), a driver call of the
    run waiting in NALAR_CALLS (here moved to another node, so with another message id) is
    found among other runs' calls; when there is none, the run is started."""
    other = await created(bus)
    run = await created(bus, age_s=300)
    for r, node in ((other, "n1"), (run, "n2")):
        spec = driver_call(r, {"session_id": "s", "workflow": "echo"}).moved(node)
        await bus.js.publish(bus.names.call(node, DRIVER_AGENT), spec.encode(),
                             headers=spec.headers())
    starts = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    assert await starts.check(run) == Outcome.QUEUED
    assert len(await stored_driver_calls(bus)) == 2

    lost = await created(bus, age_s=300)
    assert await starts.check(lost) == Outcome.STARTED
    assert [c.headers[H.RUN] for c in await stored_driver_calls(bus)].count(lost) == 1


async def test_a_run_that_progressed_gets_no_driver_call(bus: Bus, store: SessionStore) -> None:
    starts = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    running = await created(bus)
    await record(bus, running, Event.STARTED, {"workflow": "echo", "host": "h", "node": "n1",
                                               "attempt": 1}, acked=True)
    cancelled = await created(bus)  # cancelled while queued: a result and nothing else
    await publish_result(bus, {H.RUN: cancelled, H.FUTURE: ROOT_FUTURE}, value=None,
                         executor="test")
    late = await created(bus, deadline=time.time() - 1)
    assert await starts.check(running) == Outcome.PROGRESSED
    assert await starts.check(cancelled) == Outcome.PROGRESSED
    assert await starts.check(late) == Outcome.LATE
    assert await starts.check(uuid.uuid4().hex) == Outcome.GONE
    assert await stored_driver_calls(bus) == []


async def test_waits_for_a_driver_instance(bus: Bus, store: SessionStore) -> None:
    run = await created(bus)
    starts = RunStarts(bus, store, ClusterView(bus), grace_s=0.0)
    await starts.add(run, time.time() - 1)
    assert await starts.start_due() == 0
    assert await stored_driver_calls(bus) == []
    retry_at = await store.r.zscore(starts.key, run)
    assert retry_at is not None and retry_at > time.time()  # looked at again shortly


async def test_two_state_stores_start_a_run_once(bus: Bus, store: SessionStore) -> None:
    runs = [await created(bus) for _ in range(5)]
    a = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    b = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    for run in runs:
        await a.add(run, time.time() - 1)
    started = await asyncio.gather(a.start_due(), b.start_due())
    assert sum(started) == 5
    assert sorted(c.headers[H.RUN] for c in await stored_driver_calls(bus)) == sorted(runs)
    assert await store.r.zcard(a.key) == 0


async def test_every_due_run_is_checked_in_one_pass(bus: Bus, store: SessionStore) -> None:
    """Every run passes through here: a backlog bigger than a batch is drained at once."""
    starts = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    starts.BATCH = 2
    for _ in range(5):
        await starts.add(await created(bus), time.time() - 1)
    assert await starts.start_due() == 5
    assert await store.r.zcard(starts.key) == 0


async def test_a_state_store_that_dies_while_checking_leaves_the_run_due_again(
        bus: Bus, store: SessionStore) -> None:
    run = await created(bus)
    dead = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    await dead.add(run, time.time() - 1)
    now = time.time()
    # it claims the run, then dies before any outcome: the run stays, a lease ahead
    assert await dead._claim(keys=[dead.key], args=[run, now, now + 0.3]) == 1
    other = RunStarts(bus, store, view_with_driver(bus), grace_s=0.0)
    assert await other.start_due() == 0  # leased: not taken twice
    assert await store.r.zscore(other.key, run) is not None
    await wait_until(other.start_due, what="the run due again once the lease is over",
                     timeout=10)
    assert [c.headers[H.RUN] for c in await stored_driver_calls(bus)] == [run]
    assert await store.r.zscore(other.key, run) is None
