"""The agent host's parts without a server: a dispatched call runs and reports (result, journal
entry, `done`), errors and retries, cancellation, and the instances it serves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakebus import FakeBus
from nalar_agent_host.cancels import Cancellations
from nalar_agent_host.service import AgentHost
from nalar_agent_host.settings import AgentHostSettings
from nalar_common.calls import CallSpec
from nalar_common.envelope import Envelope
from nalar_common.errors import Cancelled
from nalar_common.subjects import Headers as H
from nalar_common.wire import ControlReply, Dispatch

BASIC_APP = Path(__file__).resolve().parents[3] / "tests" / "apps" / "basic"


@pytest.fixture
async def host() -> AsyncIterator[tuple[AgentHost, FakeBus]]:
    bus = FakeBus()
    h = AgentHost(bus, "n1", AgentHostSettings(app=str(BASIC_APP),  # type: ignore[arg-type]
                                               host_id="h1"))
    h.instances.make()
    async with asyncio.TaskGroup() as tg:
        h._tg = h.reporter.tg = tg
        yield h, bus
    h.pool.shutdown()
    h.driver_pool.shutdown()


async def run(h: AgentHost, method: str, *args: object, agent: str = "Echo",
              **call: object) -> dict[str, str]:
    spec = CallSpec(run="r", future="1", session="s", agent=agent, method=method,
                    args=list(args), created_at=time.time(), **call)  # type: ignore[arg-type]
    dispatch = Dispatch(call=spec.encode(), headers=spec.headers(), instance=f"h1.{agent}",
                        token="n1:1", dispatched_at=time.time(), revisions={"access": "a1"})
    await h.execution.run(spec, dispatch, "done.n1")
    return dict(next(p for p in h.bus.nc.published if p.subject == "done.n1").headers or {})


async def test_a_call_runs_and_reports_its_result_journal_entry_and_done(
        host: tuple[AgentHost, FakeBus]) -> None:
    h, bus = host
    done = await run(h, "add", 2, 3)
    assert done[H.STATUS] == "ok" and done[H.DISPATCH] == "n1:1"
    assert done[H.INSTANCE] == "h1.Echo"
    result = next(p for p in bus.js.published if p.subject == bus.names.future("r", "1"))
    assert Envelope.decode(result.data, expect="result").body["value"] == 5
    entry = next(p for p in bus.nc.published
                 if p.subject == bus.names.run_event("r", "future_resolved"))
    event = Envelope.decode(entry.data, expect="event").body
    assert event["status"] == "ok" and event["policy"]["access"] == "a1"
    assert event["args_digest"] and h.stats["executed"] == 1


async def test_an_error_is_the_result_and_the_done_says_so(
        host: tuple[AgentHost, FakeBus]) -> None:
    h, bus = host
    done = await run(h, "boom", "no", agent="Failing")
    assert done[H.STATUS] == "error" and h.stats["failed"] == 1
    result = next(p for p in bus.js.published if p.subject == bus.names.future("r", "1"))
    assert "no" in Envelope.decode(result.data, expect="result").body["error"]["message"]


async def test_a_call_for_an_instance_not_here_fails_with_not_found(
        host: tuple[AgentHost, FakeBus]) -> None:
    h, _ = host
    h.instances.live.pop("h1.Echo")
    done = await run(h, "add", 1, 1)
    assert done[H.STATUS] == "error"


async def test_a_cancelled_run_stops_its_running_call_and_starts_no_other() -> None:
    cancels = Cancellations()
    spec = CallSpec(run="r", future="1", session="", agent="A", method="m")
    ctx = type("Ctx", (), {})()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(cancels.run(spec, ctx, forever()))  # type: ignore[arg-type]
    await started.wait()
    cancels.cancel("r")
    with pytest.raises(Cancelled):
        await task
    assert ctx.cancelled.is_set()  # type: ignore[attr-defined]
    with pytest.raises(Cancelled):
        await cancels.run(spec, ctx, forever())  # type: ignore[arg-type]


async def test_instances_assign_and_release_answer_what_they_did(
        host: tuple[AgentHost, FakeBus]) -> None:
    h, _ = host
    inst, tg = h.instances, h._tg
    assert tg is not None
    assert inst.assign("Nope", tg) == ControlReply(ok=False,
                                                   error="agent 'Nope' is not in the app")
    assert inst.assign("Echo", tg).status == "already here"
    assert not inst.release("h1.Missing", tg).ok
    assert inst.get("h1.Echo") is not None and inst.free_slots() is None


async def test_a_retryable_failure_asks_for_another_attempt_and_publishes_no_result(
        host: tuple[AgentHost, FakeBus]) -> None:
    h, bus = host
    done = await run(h, "until", 3, agent="Flaky")
    assert done[H.STATUS] == "retry" and float(done[H.RETRY_AFTER]) > 0
    assert not [p for p in bus.js.published if p.subject == bus.names.future("r", "1")]
    assert bus.names.run_event("r", "retrying") in bus.subjects()
    assert h.stats["retried"] == 1


async def test_the_last_attempt_publishes_its_error(host: tuple[AgentHost, FakeBus]) -> None:
    h, bus = host
    done = await run(h, "until", 9, agent="Flaky", attempt=4)
    assert done[H.STATUS] == "error"
    assert bus.names.future("r", "1") in bus.subjects()
