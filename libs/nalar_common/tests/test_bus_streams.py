"""`Bus.iter_stream` on a real nats-server: resuming after a stream sequence, idle ticks while
following, and a consumer that goes away with its reader, a cancelled one included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import anyio
from nalar_common.bus import Bus
from nalar_common.testing import wait_until

_NATS_TASKS = ("activity_check", "check_flow_control_response")  # nats.py's, per consumer


async def _publish(bus: Bus, run: str, event: str, n: int = 1) -> list[int]:
    return [(await bus.js.publish(bus.names.run_event(run, event), b"x")).seq
            for _ in range(n)]


async def _consumers(bus: Bus) -> int:
    return (await bus.js.stream_info(bus.names.runs_stream)).state.consumer_count


def _nats_tasks() -> int:
    return sum(1 for t in asyncio.all_tasks()
               if getattr(t.get_coro(), "__name__", "") in _NATS_TASKS)


async def _until(value: Callable[[], Awaitable[int] | int], expected: int,
                 timeout: float = 10.0) -> None:
    """Poll `value` until it is `expected`."""
    await wait_until(value, until=lambda got: got == expected, timeout=timeout,
                     what=f"the value to become {expected}")


async def test_after_seq_yields_only_what_came_later(bus: Bus) -> None:
    seqs = await _publish(bus, "r1", "a", 5)
    await _publish(bus, "r2", "a", 2)  # another run's, after r1's
    subject, stream = bus.names.run_events("r1"), bus.names.runs_stream
    got = [m.seq async for m in bus.iter_stream(stream, subject, follow=False,
                                                 after_seq=seqs[1])]
    assert got == seqs[2:]
    assert [m.seq async for m in bus.iter_stream(stream, subject, follow=False)] == seqs
    # nothing after: the end of r1 (later messages are r2's) and the end of the stream
    started = time.monotonic()
    for after in (seqs[-1], seqs[-1] + 100):
        assert [m async for m in bus.iter_stream(stream, subject, follow=False,
                                                 after_seq=after)] == []
    assert time.monotonic() - started < 4  # answered, not timed out (5 s)
    assert await _consumers(bus) == 0


async def test_a_follower_resumes_and_ticks_while_idle(bus: Bus) -> None:
    seqs = await _publish(bus, "r3", "a", 3)
    stream = bus.iter_stream(bus.names.runs_stream, bus.names.run_events("r3"), follow=True,
                             after_seq=seqs[0], idle=0.1)
    try:
        assert [(await anext(stream)).seq for _ in range(2)] == seqs[1:]
        assert await anext(stream) is None  # nothing new for `idle`
        later = await _publish(bus, "r3", "b")
        while (m := await anext(stream)) is None:
            pass
        assert m.seq == later[0]
    finally:
        await stream.aclose()
    assert await _consumers(bus) == 0  # deleted on close, not left to the server's timer


async def test_a_cancelled_follower_leaves_no_consumer_or_task(bus: Bus) -> None:
    """Cancelled as Starlette cancels a response whose client went away: by an anyio cancel
    scope, which cancels every await until the scope is left, cleanup's own included."""
    await _publish(bus, "r4", "a")
    before = _nats_tasks()
    got = asyncio.Event()

    async def follow() -> None:
        async for _ in bus.iter_stream(bus.names.runs_stream, bus.names.run_events("r4"),
                                       follow=True):
            got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        await asyncio.wait_for(got.wait(), 10)
        assert await _consumers(bus) == 1 and _nats_tasks() == before + 2
        tg.cancel_scope.cancel()
    # well before the server's own timer (`inactive_threshold`, 5 s) would drop it
    await _until(lambda: _consumers(bus), 0, timeout=2)
    await _until(_nats_tasks, before, timeout=2)
