"""Session registry, leases and fenced writes against a real valkey-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nalar_common.state import SessionStore, WriteOutcome
from nalar_common.subjects import Names


@pytest.fixture
async def store(redis_url: str, names: Names) -> AsyncIterator[SessionStore]:
    s = SessionStore.from_url(redis_url, names)
    yield s
    await s.close()


async def test_registry(store: SessionStore) -> None:
    await store.register_run("s1", "r1", "wf", 1.0)
    await store.register_run("s1", "r2", "wf", 2.0)
    info = await store.session("s1")
    assert info is not None
    assert [r["run_id"] for r in info["runs"]] == ["r1", "r2"]
    assert info["created_at"] == 1.0 and info["last_seen"] == 2.0
    assert await store.session("nope") is None


async def test_idempotency_key_claim(store: SessionStore) -> None:
    assert await store.claim_idempotency_key("t", "k", "r1") == "r1"
    assert await store.claim_idempotency_key("t", "k", "r2") == "r1"
    results = await asyncio.gather(*[store.claim_idempotency_key("t", "k2", f"r{i}")
                                     for i in range(10)])
    assert len(set(results)) == 1


async def test_idempotency_keys_of_two_tenants_never_collide(store: SessionStore) -> None:
    # tenant `acme/x` with key `y` once read tenant `acme`'s run for key `x/y`
    assert await store.claim_idempotency_key("acme", "x/y", "r-acme") == "r-acme"
    assert await store.claim_idempotency_key("acme/x", "y", "r-other") == "r-other"
    assert await store.claim_idempotency_key("acme:x", "y", "r-3") == "r-3"
    assert await store.claim_idempotency_key("acme", "x:y", "r-4") == "r-4"


async def test_lease_fencing(store: SessionStore) -> None:
    a = await store.acquire("s", "A", ttl_ms=200, agent="agent")
    assert a is not None and a.epoch == 1
    assert await store.acquire("s", "B", ttl_ms=200, agent="agent") is None
    other = await store.acquire("s", "B", ttl_ms=200, agent="other")  # another agent's lease
    assert other is not None
    assert (await store.write_state(a, "op1", {"n": 1}))[0] == WriteOutcome.APPLIED
    assert (await store.write_state(a, "op1", {"n": 1}))[0] == WriteOutcome.DUPLICATE
    await asyncio.sleep(0.3)  # A's lease expires (a zombie writer)
    b = await store.acquire("s", "B", ttl_ms=1000, agent="agent")
    assert b is not None and b.epoch == 2
    assert (await store.write_state(a, "op2", {"n": 99}))[0] == WriteOutcome.FENCED
    assert (await store.write_state(b, "op3", {"n": 2}, expected_version=0))[0] \
        == WriteOutcome.CONFLICT
    assert await store.write_state(b, "op3", {"n": 2}, expected_version=1) == (
        WriteOutcome.APPLIED, 2)
    assert await store.read_state("s", "agent") == ({"n": 2}, 2)
    assert not await store.release(a)
    assert await store.release(b)


async def test_session_view_and_end(store: SessionStore) -> None:
    await store.register_run("s2", "r1", "wf", 1.0)
    lease = await store.acquire("s2", "inst-1", agent="Counter")
    assert lease is not None
    await store.write_state(lease, "op", {"c": {"n": 1}})
    info = await store.session("s2")
    assert info is not None
    assert info["agents"] == [{"agent": "Counter", "version": 1, "lease": lease.token}]
    assert await store.end_session("s2")
    assert await store.session("s2") is None
    assert await store.read_state("s2", "Counter") == (None, 0)
    again = await store.acquire("s2", "inst-2", agent="Counter")
    assert again is not None and again.epoch == 2  # epochs survive: fencing never goes back
    assert not await store.end_session("nope")
