"""Admission by stream fill against a real nats-server with tiny byte limits: new runs are
refused (503) above the high-water mark, while what accepted runs write is still stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nalar_common.bus import Bus, connect
from nalar_common.errors import Unavailable
from nalar_common.journal import Event, record
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names
from nalar_gateway.capacity import Capacity

LIMIT = 100_000


@pytest.fixture
async def small(nats_url: str, names: Names) -> AsyncIterator[Bus]:
    bus = await connect(NatsSettings(url=nats_url, prefix=names.prefix, runs_max_bytes=LIMIT,
                                     calls_max_bytes=LIMIT), names, name="pytest-capacity")
    await bus.ensure_topology()
    yield bus
    await bus.close()


async def fill(bus: Bus, stream: str, subject: str, ratio: float) -> None:
    while (await bus.js.stream_info(stream)).state.bytes < ratio * LIMIT:
        await bus.js.publish(subject, b"x" * 1000, timeout=5)


async def test_journal_above_the_mark_refuses_new_runs_not_accepted_ones(small: Bus) -> None:
    names = small.names
    gauge = Capacity(small, cache_s=0)
    await gauge.check()  # empty streams admit
    await fill(small, names.runs_stream, names.run_event("accepted", "pad"), 0.9)
    with pytest.raises(Unavailable) as refused:
        await gauge.check()
    err = refused.value
    assert (err.error_code, err.http_status) == ("unavailable", 503)
    assert err.details["stream"] == names.runs_stream
    assert err.details["max_bytes"] == LIMIT and err.details["fill"] >= 0.9
    # the run admitted before keeps journalling: the room above the mark is its
    for i in range(5):
        await record(small, "accepted", Event.FUTURE_RESOLVED, {"future": str(i)}, acked=True)
    await record(small, "accepted", Event.FINISHED, {"status": "succeeded"}, acked=True,
                 msg_id="accepted.finished")
    last = await small.direct_get_last(names.runs_stream,
                                       names.run_event("accepted", Event.FINISHED))
    assert last is not None


async def test_calls_above_the_mark_refuse_new_runs(small: Bus) -> None:
    names = small.names
    await fill(small, names.calls_stream, names.call("n1", "Echo"), 0.95)
    with pytest.raises(Unavailable) as refused:
        await Capacity(small, cache_s=0).check()
    assert refused.value.details["stream"] == names.calls_stream


async def test_fill_is_read_at_most_once_a_second(small: Bus,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    reads = 0
    real = small.js.stream_info

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(small.js, "stream_info", counting)
    gauge = Capacity(small)
    for _ in range(20):
        await gauge.check()
    assert reads == 2  # one per stream, then from the cache
