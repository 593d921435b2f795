"""Byte limits of NALAR_CALLS and NALAR_RUNS and the pins' TTL, against a real nats-server:
set on new streams, applied to existing ones, and a full stream refuses, never drops."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nalar_common.bus import Bus, connect
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError
from structlog.testing import capture_logs


async def bus_with(nats_url: str, names: Names, **settings: object) -> Bus:
    return await connect(NatsSettings(url=nats_url, prefix=names.prefix, **settings), names,
                         name="pytest-limits")


@pytest.fixture
async def closing() -> AsyncIterator[list[Bus]]:
    buses: list[Bus] = []
    yield buses
    for b in buses:
        await b.close()


async def test_new_streams_get_byte_limits_and_discard_new(
        nats_url: str, names: Names, closing: list[Bus]) -> None:
    bus = await bus_with(nats_url, names, calls_max_bytes=1 << 16, runs_max_bytes=-1,
                         runs_max_age_s=3600)
    closing.append(bus)
    await bus.ensure_topology()
    calls = (await bus.js.stream_info(names.calls_stream)).config
    runs = (await bus.js.stream_info(names.runs_stream)).config
    assert (calls.max_bytes, calls.discard) == (1 << 16, DiscardPolicy.NEW)
    assert (runs.max_bytes, runs.discard) == (-1, DiscardPolicy.NEW)
    pins = await (await bus.kv(names.pins_bucket)).status()
    assert pins.ttl == 3600  # pins live as long as the journal by default


async def test_existing_streams_follow_the_settings(
        nats_url: str, names: Names, closing: list[Bus]) -> None:
    """A stream made before the limits (discard old, no byte limit) gets the settings' limit
    and discard `new`; the limits the settings do not name stay as an operator set them."""
    bus = await bus_with(nats_url, names, runs_max_bytes=64 << 10, calls_max_bytes=1 << 16,
                         pins_ttl_s=0)
    closing.append(bus)
    await bus.js.add_stream(StreamConfig(
        name=names.runs_stream, subjects=[names.all_run_events],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, allow_direct=True,
        duplicate_window=60, max_msgs=12_345, max_age=bus.settings.runs_max_age_s))
    await bus.js.add_stream(StreamConfig(  # NALAR_CALLS as it used to be made
        name=names.calls_stream, subjects=[names.all_calls],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, duplicate_window=120,
        allow_direct=True))
    await bus.kv(names.pins_bucket, ttl=600)
    await bus.ensure_topology()
    runs = (await bus.js.stream_info(names.runs_stream)).config
    assert (runs.max_bytes, runs.discard) == (64 << 10, DiscardPolicy.NEW)
    calls = (await bus.js.stream_info(names.calls_stream)).config
    assert (calls.max_bytes, calls.discard) == (1 << 16, DiscardPolicy.NEW)
    assert (runs.max_msgs, runs.duplicate_window) == (12_345, 60)
    assert not (await (await bus.kv(names.pins_bucket)).status()).ttl  # 0: never expire

    other = await bus_with(nats_url, names, runs_max_bytes=128 << 10, calls_max_bytes=1 << 16)
    closing.append(other)
    await other.ensure_topology()
    assert (await bus.js.stream_info(names.runs_stream)).config.max_bytes == 128 << 10
    assert (await (await bus.kv(names.pins_bucket)).status()).ttl == \
        other.settings.runs_max_age_s


async def test_a_full_stream_refuses_and_keeps_what_it_has(
        nats_url: str, names: Names, closing: list[Bus]) -> None:
    bus = await bus_with(nats_url, names, runs_max_bytes=8192)
    closing.append(bus)
    await bus.ensure_topology()
    subject = names.run_event("r1", "pad")
    stored = 0
    with pytest.raises(APIError) as refused:
        for _ in range(100):
            await bus.js.publish(subject, b"x" * 1000, timeout=5)
            stored += 1
    assert "maximum bytes" in str(refused.value).lower()
    info = await bus.js.stream_info(names.runs_stream)
    assert info.state.messages == stored and info.state.first_seq == 1  # nothing dropped


async def test_a_limit_the_server_cannot_reserve_is_left_off_loudly(
        nats_url: str, names: Names, closing: list[Bus]) -> None:
    """JetStream reserves `max_bytes` when a stream is made; without the room the stream is
    made without a limit (publishes fail when the server's storage is full) and a warning
    says so, rather than the process not starting."""
    bus = await bus_with(nats_url, names, runs_max_bytes=1 << 55, calls_max_bytes=1 << 16)
    closing.append(bus)
    with capture_logs() as logs:
        await bus.ensure_topology()
    runs = (await bus.js.stream_info(names.runs_stream)).config
    assert (runs.max_bytes, runs.discard) == (-1, DiscardPolicy.NEW)
    assert [e["stream"] for e in logs if e["event"] == "stream.limit_not_reserved"] == \
        [names.runs_stream]
