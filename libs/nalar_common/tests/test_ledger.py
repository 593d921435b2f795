"""The idempotency ledger against a real valkey-server: record once, replay, wait for a live
claim, take over an expired one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from nalar_common.errors import Unavailable
from nalar_common.ledger import Ledger
from nalar_common.subjects import Names


@pytest.fixture
async def ledger(redis_url: str, names: Names) -> AsyncIterator[Ledger]:
    client = aioredis.Redis.from_url(redis_url)
    yield Ledger(client, names, claim_ttl_ms=300, wait_s=5)
    await client.aclose()


async def test_first_attempt_records_and_later_ones_replay(ledger: Ledger) -> None:
    first = await ledger.begin("r1", "1:charge", "a1")
    assert not first.done and first.tries == 1
    assert await ledger.finish("r1", "1:charge", "a1", {"charged": 42}) == {"charged": 42}
    again = await ledger.begin("r1", "1:charge", "a2")
    assert again.done and again.value == {"charged": 42}
    record = await ledger.read("r1", "1:charge")
    assert record is not None and record["tries"] == 1 and record["result"] == {"charged": 42}
    other = await ledger.begin("r1", "2:charge", "a1")  # another future: its own record
    assert not other.done


async def test_a_live_claim_makes_the_next_attempt_wait_for_its_result(ledger: Ledger) -> None:
    assert not (await ledger.begin("r2", "k", "a1")).done
    waiting = asyncio.create_task(ledger.begin("r2", "k", "a2"))
    for _ in range(4):  # the holder keeps its claim alive while it runs
        await asyncio.sleep(0.15)
        assert await ledger.renew("r2", "k", "a1")
    assert not waiting.done()
    await ledger.finish("r2", "k", "a1", "first")
    got = await waiting
    assert got.done and got.value == "first"


async def test_an_expired_claim_is_taken_over_and_tries_count(ledger: Ledger) -> None:
    assert (await ledger.begin("r3", "k", "dead")).tries == 1
    await asyncio.sleep(0.4)  # the holder died: its claim expires
    taken = await ledger.begin("r3", "k", "a2")
    assert not taken.done and taken.tries == 2  # an earlier attempt may have begun it
    assert not await ledger.renew("r3", "k", "dead")
    # the dead one's late result still counts if it lands first: one result, never two
    assert await ledger.finish("r3", "k", "dead", "late") == "late"
    assert await ledger.finish("r3", "k", "a2", "mine") == "late"


async def test_abandon_frees_the_claim_at_once(ledger: Ledger) -> None:
    await ledger.begin("r4", "k", "a1")
    await ledger.abandon("r4", "k", "a1")
    assert not (await ledger.begin("r4", "k", "a2")).done


async def test_waiting_too_long_is_unavailable(redis_url: str, names: Names) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        short = Ledger(client, names, claim_ttl_ms=5_000, wait_s=0.3)
        await short.begin("r5", "k", "a1")
        with pytest.raises(Unavailable):
            await short.begin("r5", "k", "a2")
    finally:
        await client.aclose()
