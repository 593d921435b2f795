"""Futures on a real nats-server: write-once results, waiting by subscription and backstop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from nalar_common.bus import Bus
from nalar_common.calls import publish_result
from nalar_common.errors import AgentError
from nalar_common.futures import FutureResult, FutureWaiter
from nalar_common.subjects import Headers as H


def _headers(run: str, fut: str) -> dict[str, str]:
    return {H.RUN: run, H.FUTURE: fut, H.AGENT: "A", H.METHOD: "m", H.SESSION: "s"}


async def test_topology_is_idempotent(bus: Bus) -> None:
    await bus.ensure_topology()
    await bus.ensure_topology()
    info = await bus.js.stream_info(bus.names.futures_stream)
    assert info.config.max_msgs_per_subject == 1


async def test_journal_retention_follows_the_settings(bus: Bus) -> None:
    """`NALAR_NATS_RUNS_MAX_AGE_S` / `..._FUTURES_MAX_AGE_S`: a changed retention is applied
    to the existing streams by the next process that starts; other limits are kept."""
    await bus.ensure_topology()
    runs = bus.names.runs_stream
    old = (await bus.js.stream_info(runs)).config
    await bus.js.update_stream(replace(old, max_msgs=123_456))  # an operator's own limit
    bus.settings.runs_max_age_s, bus.settings.futures_max_age_s = 3600.0, 7200.0
    await bus.ensure_topology()
    info = (await bus.js.stream_info(runs)).config
    assert info.max_age == 3600 and info.max_msgs == 123_456
    assert (await bus.js.stream_info(bus.names.futures_stream)).config.max_age == 7200


async def test_result_is_write_once(bus: Bus) -> None:
    assert await publish_result(bus, _headers("r1", "1"), value=1, executor="x")
    assert not await publish_result(bus, _headers("r1", "1"), value=2, executor="y")
    waiter = FutureWaiter(bus)
    stored = await waiter.get("r1", "1")
    assert stored is not None and stored.value() == 1
    assert stored.headers[H.EXECUTOR] == "x"


async def test_wait_before_and_after_resolution(bus: Bus) -> None:
    waiter = FutureWaiter(bus)
    got: list[FutureResult] = []
    done = asyncio.Event()

    def cb(r: FutureResult) -> None:
        got.append(r)
        done.set()

    await waiter.watch("r2", "1", cb)  # subscribed before the result exists
    await publish_result(bus, _headers("r2", "1"), value="", executor="x")
    await asyncio.wait_for(done.wait(), 5)
    assert got[0].value() == ""
    done.clear()
    await waiter.watch("r2", "1", cb)  # after: the direct-get backstop finds it
    await asyncio.wait_for(done.wait(), 5)
    assert len(got) == 2 and waiter.pending == 0


async def test_errors_come_back_typed(bus: Bus) -> None:
    await publish_result(bus, _headers("r3", "1"), error=AgentError("boom", details={"a": 1}),
                         executor="x")
    stored = await FutureWaiter(bus).get("r3", "1")
    assert stored is not None and not stored.ok
    err = stored.error()
    assert isinstance(err, AgentError) and err.details == {"a": 1}


async def test_recheck_finds_results_missed_while_disconnected(bus: Bus) -> None:
    waiter = FutureWaiter(bus)
    got: list[str] = []
    # a pending wait whose result was stored without our subscription seeing it
    await publish_result(bus, _headers("r4", "7"), value=7, executor="x")
    waiter._pending[("r4", "7")] = [lambda r: got.append(r.value())]
    await waiter.recheck()
    assert got == [7]


async def test_multi_last_with_wildcard(bus: Bus) -> None:
    for i in range(5):
        await publish_result(bus, _headers("r5", str(i)), value=i, executor="x")
    found = await bus.multi_last(bus.names.futures_stream, [bus.names.futures_of_run("r5")])
    assert len(found) == 5


async def test_run_subscription_lingers_then_is_dropped(bus: Bus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nalar_common import futures

    waiter = FutureWaiter(bus)
    done = asyncio.Event()
    await waiter.watch("r6", "1", lambda r: done.set(), check_stored=False)
    await publish_result(bus, _headers("r6", "1"), value=1, executor="x")
    await asyncio.wait_for(done.wait(), 5)
    assert "r6" in waiter._runs  # kept for the driver's next call
    monkeypatch.setattr(futures, "IDLE_LINGER_S", 0.0)
    done.clear()
    await waiter.watch("r7", "1", lambda r: done.set(), check_stored=False)
    await publish_result(bus, _headers("r7", "1"), value=1, executor="x")
    await asyncio.wait_for(done.wait(), 5)
    await waiter._release_idle("r7")  # the sweep that follows every delivery
    assert "r6" not in waiter._runs and "r7" not in waiter._runs


async def test_result_missed_by_subscription_and_backstop_is_found_again(bus: Bus,
                                                                           monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The race: the result was published before our SUB reached the server and the stream
    had not stored it yet when the direct get ran. A second look finds it."""
    await publish_result(bus, _headers("r8", "1"), value="late", executor="x")
    real = bus.direct_get_last

    async def not_yet_stored(stream: str, subject: str, timeout: float = 2.0):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(bus, "direct_get_last", real)
        return None

    monkeypatch.setattr(bus, "direct_get_last", not_yet_stored)
    waiter = FutureWaiter(bus)
    done = asyncio.Event()
    got: list[object] = []
    await waiter.watch("r8", "1", lambda r: (got.append(r.value()), done.set()))
    await asyncio.wait_for(done.wait(), 5)
    assert got == ["late"]


async def test_forgotten_futures_drop_their_run_subscription(bus: Bus) -> None:
    """A driver that leaves to wait for a signal stops awaiting it on its host: the run's
    subscription goes at once, unless another of the run's futures is still awaited there."""
    from nalar_common.subjects import is_signal_future

    waiter = FutureWaiter(bus)
    got: list[str] = []
    called = asyncio.Event()

    def cb(what: str) -> Callable[[FutureResult], None]:
        return lambda r: (got.append(what), called.set())  # type: ignore[func-returns-value]

    await waiter.watch("r9", "sig-go", cb("sig"), check_stored=False)
    assert await waiter.forget("r9", is_signal_future) == 1
    assert "r9" not in waiter._runs and waiter.pending == 0
    await waiter.watch("r10", "sig-go", cb("sig"), check_stored=False)
    await waiter.watch("r10", "1", cb("call"), check_stored=False)
    assert await waiter.forget("r10", is_signal_future) == 1
    assert waiter._runs["r10"].pending == 1  # the call is still awaited: the SUB stays
    await publish_result(bus, _headers("r10", "sig-go"), value=1, executor="x")
    await publish_result(bus, _headers("r10", "1"), value=1, executor="x")
    await asyncio.wait_for(called.wait(), 5)
    assert got == ["call"] and waiter.pending == 0


async def test_read_all_pages_without_a_consumer(bus: Bus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every message of a subject (or a wildcard), oldest first, over batch direct gets."""
    from nalar_common import bus as bus_module

    monkeypatch.setattr(bus_module, "MULTI_LAST_BATCH", 3)  # pages of 3
    for i in range(7):
        await publish_result(bus, _headers("r11", str(i)), value=i, executor="x")
    names = bus.names
    before = (await bus.js.stream_info(names.futures_stream)).state.consumer_count
    got = await bus.read_all(names.futures_stream, names.futures_of_run("r11"))
    assert [FutureResult("r11", "", m.data, m.headers).value() for m in got] == list(range(7))
    one = await bus.read_all(names.futures_stream, names.future("r11", "4"))
    assert [m.subject for m in one] == [names.future("r11", "4")]
    assert await bus.read_all(names.futures_stream, names.future("r11", "nope")) == []
    assert (await bus.js.stream_info(names.futures_stream)).state.consumer_count == before


async def test_read_all_says_when_the_server_cannot_answer(bus: Bus) -> None:
    """No stream (or no responder): `Unavailable`, never an empty list taken for the truth."""
    import pytest
    from nalar_common.errors import Unavailable

    await bus.ensure_topology()
    with pytest.raises(Unavailable):
        await bus.read_all("NO_SUCH_STREAM", "x.y", timeout=2)
    assert await bus.read_all(bus.names.futures_stream, bus.names.future("r12", "1")) == []
