"""`?wait` against a real nats-server: one subscription on every run's root future serves all
waiting requests; a request that started the run hears its result, one that waits for a run
started elsewhere also looks it up; nothing is kept for a wait that ended; and a run's view is
built on the result that came, since the stream may store it a moment later."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nalar_common.bus import Bus
from nalar_common.calls import encode_result, publish_result
from nalar_common.futures import FutureResult
from nalar_common.journal import Event, record
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nalar_gateway.lookups import Lookups
from nalar_gateway.results import RunResults
from nalar_gateway.runs import RunReader


@pytest.fixture
async def results(bus: Bus) -> AsyncIterator[RunResults]:
    r = RunResults(bus)
    await r.start()
    yield r


async def finish(bus: Bus, run: str, value: object) -> None:
    await publish_result(bus, {H.RUN: run, H.FUTURE: ROOT_FUTURE, H.AGENT: DRIVER_AGENT,
                               H.METHOD: "echo"}, value=value, executor="test")


async def test_a_run_expected_before_its_call_hears_its_result(bus: Bus,
                                                               results: RunResults) -> None:
    run = uuid.uuid4().hex
    results.expect(run)
    await finish(bus, run, {"n": 1})  # before the request waits: kept for it
    await finish(bus, uuid.uuid4().hex, "another run's")  # nobody waits: dropped
    got = await results.wait(run, 5)
    assert got is not None and got.value() == {"n": 1}
    assert results.waiting == 0


async def test_a_wait_for_a_finished_run_looks_its_result_up(bus: Bus,
                                                             results: RunResults) -> None:
    run = uuid.uuid4().hex
    await finish(bus, run, "done")
    got = await results.wait(run, 5)
    assert got is not None and got.value() == "done"
    assert results.waiting == 0


async def test_concurrent_waits_for_one_run_all_hear_it(bus: Bus, results: RunResults) -> None:
    run = uuid.uuid4().hex
    results.expect(run)
    waits = [asyncio.ensure_future(results.wait(run, 5)) for _ in range(3)]
    await asyncio.sleep(0)  # every wait registered before the result comes
    await finish(bus, run, 7)
    assert [r.value() for r in await asyncio.gather(*waits) if r is not None] == [7, 7, 7]
    assert results.waiting == 0


async def test_nothing_is_kept_for_a_wait_that_ended(results: RunResults) -> None:
    run = uuid.uuid4().hex
    assert await results.wait(run, 0.2) is None
    results.expect(run)
    results.forget(run)  # its driver call was refused: no wait follows
    assert results.waiting == 0


async def test_a_lost_result_is_found_after_a_reconnect(bus: Bus, results: RunResults) -> None:
    """Core messages sent while disconnected are lost: `recheck` reads what was stored."""
    run = uuid.uuid4().hex
    results.expect(run)
    waiting = asyncio.ensure_future(results.wait(run, 5))
    await asyncio.sleep(0)
    # stored without reaching the subscription (as if published while we were away)
    status, payload = encode_result(value="stored", executor="test")
    await results._sub.unsubscribe()
    await bus.js.publish(bus.names.future(run, ROOT_FUTURE), payload,
                         headers={H.RUN: run, H.FUTURE: ROOT_FUTURE, H.STATUS: status})
    await results.recheck()
    got = await waiting
    assert got is not None and got.value() == "stored"


async def test_the_view_is_built_on_the_result_that_came(bus: Bus) -> None:
    """A `?wait` answer once read the root future back from the stream right after its result
    was delivered, and could find it not stored yet: 202 `running` for a finished run."""
    reader = RunReader(bus, Lookups(bus))
    await reader.lookups.start()
    run = uuid.uuid4().hex
    await record(bus, run, Event.CREATED, {"workflow": "echo", "session_id": "s"},
                 acked=True, msg_id=f"{run}.created")
    await record(bus, run, Event.STARTED, {"attempt": 1}, acked=True)
    assert (await reader.get(run) or {})["status"] == "running"  # nothing stored
    status, payload = encode_result(value=42, executor="test",
                                    timings={"finished": 123.0})
    came = FutureResult(run, ROOT_FUTURE, payload, {H.STATUS: status})
    view = await reader.get(run, root=came)
    assert view is not None
    assert (view["status"], view["result"], view["finished_at"]) == ("succeeded", 42, 123.0)
    assert view["started_at"] is not None
