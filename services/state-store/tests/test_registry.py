"""The run registry against a real nats-server and valkey-server: `created` events are written
in batches (session registry, deadline, start check), each acked once written; a run whose
driver was heard starting gets no start check, or loses it at the next tick."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView
from nalar_common.journal import Event, record
from nalar_common.state import SessionStore
from nalar_common.subjects import Names
from nalar_state_store.deadlines import RunDeadlines
from nalar_state_store.registry import RunRegistry
from nalar_state_store.starts import RunStarts


@pytest.fixture
async def store(redis_url: str, names: Names) -> AsyncIterator[SessionStore]:
    s = SessionStore.from_url(redis_url, names)
    yield s
    await s.close()


async def created(bus: Bus) -> str:
    """Journal a run's `created` event the way `Gateway._launch` does."""
    run = uuid.uuid4().hex
    await record(bus, run, Event.CREATED, {
        "workflow": "echo", "session_id": "s-" + run[:6], "input": {}, "priority": 0,
        "deadline": time.time() + 600,
        "principal": {"name": "test", "roles": ["admin"], "tenant": "default"}},
        acked=True, msg_id=f"{run}.created")
    return run


async def fetch_created(bus: Bus, n: int) -> list[Any]:
    """The next `n` created events, through a durable pull consumer (they need acks)."""
    sub = await bus.js.pull_subscribe(bus.names.run_created_all(), durable="pytest_registry",
                                      stream=bus.names.runs_stream)
    return list(await sub.fetch(n, timeout=5))


async def test_a_batch_registers_every_run_and_acks_each(bus: Bus, store: SessionStore) -> None:
    starts = RunStarts(bus, store, ClusterView(bus), grace_s=5.0)
    deadlines = RunDeadlines(bus, store)
    registry = RunRegistry(bus, store, deadlines, starts, session_ttl_s=3600.0)
    runs = [await created(bus) for _ in range(3)]
    starts.heard_started(runs[2])  # its driver started before its `created` came here
    assert await registry.write(await fetch_created(bus, 3)) == 3
    assert registry.registered == 3
    for run in runs:
        info = await store.session("s-" + run[:6])
        assert info is not None and [r["run_id"] for r in info["runs"]] == [run]
        assert await store.r.zscore(deadlines.key, run) is not None
    assert await store.r.zscore(starts.key, runs[0]) is not None
    assert await store.r.zscore(starts.key, runs[2]) is None  # never checked
    # every event was acked: none is delivered again
    await bus.nc.flush()
    consumer = await bus.js.consumer_info(bus.names.runs_stream, "pytest_registry")
    assert (consumer.num_ack_pending, consumer.num_pending) == (0, 0)


async def test_an_unreadable_event_is_dead_lettered_and_the_rest_written(
        bus: Bus, store: SessionStore) -> None:
    starts = RunStarts(bus, store, ClusterView(bus), grace_s=5.0)
    registry = RunRegistry(bus, store, RunDeadlines(bus, store), starts, session_ttl_s=None)
    await bus.js.publish(bus.names.run_event("junk", Event.CREATED), b"\x00junk")
    run = await created(bus)
    assert await registry.write(await fetch_created(bus, 2)) == 1
    assert await store.r.zscore(starts.key, run) is not None
    info = await bus.js.stream_info(bus.names.dlq_stream)
    assert info.state.messages == 1


async def test_runs_heard_starting_leave_the_start_checks(
        bus: Bus, store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through NATS: the driver's `started` event reaches the state store, and the run is taken
    out of the set at the next tick, so only runs that never started get checked."""
    starts = RunStarts(bus, store, ClusterView(bus), grace_s=5.0)
    runs = [await created(bus) for _ in range(3)]
    both = asyncio.Event()
    hear = starts.heard_started

    def heard(run: str) -> None:
        hear(run)
        if all(starts.started(r) for r in runs[:2]):
            both.set()

    monkeypatch.setattr(starts, "heard_started", heard)
    sub = await starts.subscribe()
    try:
        for run in runs:
            await starts.add(run, time.time())
        for run in runs[:2]:
            await record(bus, run, Event.STARTED, {"workflow": "echo", "host": "h",
                                                   "node": "n1", "attempt": 1}, acked=True)
        async with asyncio.timeout(5):
            await both.wait()
        assert not starts.started(runs[2])
        assert await starts.drop_started() == 2
        left = await store.r.zrange(starts.key, 0, -1)
        assert [r.decode() for r in left] == [runs[2]]
    finally:
        await sub.unsubscribe()
