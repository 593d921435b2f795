"""Session collection against a real valkey-server: a session is forgotten with its state once
its newest run is older than the TTL, and not while a newer run or a running call keeps it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nalar_common.state import SessionStore, WriteOutcome, session_index_key
from nalar_common.subjects import Names
from nalar_state_store.sessions import SessionCollector

TTL = 100.0


@pytest.fixture
async def store(redis_url: str, names: Names) -> AsyncIterator[SessionStore]:
    s = SessionStore.from_url(redis_url, names)
    yield s
    await s.close()


async def with_state(store: SessionStore, session: str, agent: str, value: object) -> None:
    lease = await store.acquire(session, "inst-1", agent=agent)
    assert lease is not None
    outcome, _ = await store.write_state(lease, f"op-{agent}", value)
    assert outcome == WriteOutcome.APPLIED
    assert await store.release(lease)


async def keys_of(store: SessionStore, session: str) -> set[str]:
    found = await store.r.keys(store.names.session_key(session, "*"))
    return {k.decode().rsplit(":", 1)[-1] if b"epoch" not in k else "epoch" for k in found}


async def test_a_session_is_collected_with_its_state_after_its_last_run(
        store: SessionStore) -> None:
    await store.register_run("s1", "r1", "wf", 1000.0, "acme", ttl_s=TTL)
    await with_state(store, "s1", "Notes", {"n": 1})  # an agent's first state, during the run
    await store.register_run("s1", "r2", "wf", 1050.0, ttl_s=TTL)
    await with_state(store, "s1", "Cart", ["x"])
    gc = SessionCollector(store, TTL, interval_s=1.0)

    assert await gc.collect_due(now=1100.0) == 0  # r2 keeps it until 1150
    assert (await store.session("s1") or {}).get("tenant") == "acme"
    assert await gc.collect_due(now=1149.0) == 0
    assert await gc.collect_due(now=1151.0) == 1
    assert await store.session("s1") is None
    assert await store.read_state("s1", "Notes") == (None, 0)
    assert await store.session_tenant("s1") == (False, None)  # another tenant may take the id
    assert await keys_of(store, "s1") == {"epoch"}  # fencing counters stay (as end_session)
    assert await store.r.zcard(session_index_key(store.names)) == 0


async def test_runs_registered_out_of_order_never_move_a_session_back(
        store: SessionStore) -> None:
    await store.register_run("s2", "new", "wf", 2000.0, ttl_s=TTL)
    await store.register_run("s2", "old", "wf", 1990.0, ttl_s=TTL)  # a backlog, late
    info = await store.session("s2")
    assert info is not None and info["last_seen"] == 2000.0
    assert await SessionCollector(store, TTL, 1.0).collect_due(now=2095.0) == 0
    assert await store.session("s2") is not None


async def test_a_run_registered_without_ttl_keeps_a_due_session(store: SessionStore) -> None:
    """The gateway registers a run (no TTL) before the state store does: a session that came
    due meanwhile is not collected under the new run."""
    await store.register_run("s3", "r1", "wf", 1000.0, ttl_s=TTL)
    await store.register_run("s3", "r2", "wf", 1200.0, "acme")
    gc = SessionCollector(store, TTL, 1.0)
    assert await gc.collect_due(now=1201.0) == 0
    assert await store.session("s3") is not None
    due = await store.r.zscore(session_index_key(store.names), "s3")
    assert due == 1300.0  # looked at again when r2 is old


async def test_a_session_whose_state_is_in_use_waits(store: SessionStore) -> None:
    await store.register_run("s4", "r1", "wf", 1000.0, ttl_s=TTL)
    await with_state(store, "s4", "Notes", 1)
    held = await store.acquire("s4", "inst-2", ttl_ms=60_000, agent="Notes")
    assert held is not None
    gc = SessionCollector(store, TTL, 1.0)
    assert await gc.collect_due(now=1200.0) == 0
    assert await store.read_state("s4", "Notes") == (1, 1)
    await store.release(held)
    assert await gc.collect_due(now=1261.0) == 1


async def test_old_runs_leave_the_list_and_no_global_set_grows(store: SessionStore) -> None:
    for i in range(5):
        await store.register_run("s5", f"r{i}", "wf", 1000.0 + 60 * i, ttl_s=TTL)
    info = await store.session("s5")
    assert info is not None
    assert [r["run_id"] for r in info["runs"]] == ["r3", "r4"]  # r2 (1120) < 1240 - 100
    assert not await store.r.exists(store.names.redis("sessions"))


async def test_without_ttl_nothing_is_indexed_or_collected(store: SessionStore) -> None:
    await store.register_run("s6", "r1", "wf", 1.0)
    assert await store.r.zcard(session_index_key(store.names)) == 0
    assert await SessionCollector(store, None, 1.0).collect_due(now=1e12) == 0
    assert await store.session("s6") is not None


async def test_two_collectors_collect_each_session_once(store: SessionStore) -> None:
    for i in range(10):
        await store.register_run(f"m{i}", "r", "wf", 1000.0, ttl_s=TTL)
    a, b = SessionCollector(store, TTL, 1.0), SessionCollector(store, TTL, 1.0)
    assert sum(await asyncio.gather(a.collect_due(now=2000.0),
                                    b.collect_due(now=2000.0))) == 10
