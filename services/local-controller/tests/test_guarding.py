"""The guardrails hook on a real valkey-server (its counters are Redis scripts), the bus in
memory: a call past a `reject` limit fails with the guardrail's error; one past a `pause`
limit waits, journalled once however often it is checked again, and a cancel still ends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakebus import FakeBus, FakeMsg
from lc_fakes import call_headers, instance, started
from nalar_common.authz import PolicyFile
from nalar_common.envelope import Envelope
from nalar_common.guardrails import GuardrailFile
from nalar_common.state import SessionStore
from nalar_common.subjects import Names
from nalar_local_controller.held import CallState
from nalar_local_controller.service import LocalController
from nalar_local_controller.settings import LocalControllerSettings


@pytest.fixture
async def guarded(tmp_path: Path, redis_url: str,
                  names: Names) -> AsyncIterator[tuple[LocalController, FakeBus, Path]]:
    bus = FakeBus()
    bus.names = names
    store = SessionStore.from_url(redis_url, names)
    limits = tmp_path / "guardrails.yaml"
    limits.write_text("limits: []\n")
    lc = LocalController(bus, "n1", LocalControllerSettings(), store,  # type: ignore[arg-type]
                         access=PolicyFile.off(),
                         guardrails=GuardrailFile(limits, check_every_s=0.0))
    lc.view.instances["i1"] = instance("i1", concurrency=8)
    lc.recovery.sync_instances()
    yield lc, bus, limits
    await store.close()


async def call(lc: LocalController, fut: str) -> FakeMsg:
    msg = FakeMsg(call_headers(fut))
    await lc.admission.on_call(msg)
    return msg


async def test_a_call_past_a_reject_limit_fails_with_the_guardrails_error(
        guarded: tuple[LocalController, FakeBus, Path]) -> None:
    lc, bus, limits = guarded
    limits.write_text("limits: [{name: twice, iterations: 2, agent: A, action: reject}]\n")
    async with started(lc):
        for fut in ("1", "2", "3"):
            await call(lc, fut)
    assert lc.book.held["r.1"].dispatched and lc.book.held["r.2"].dispatched
    assert "r.3" not in lc.book.held and lc.stats["guardrail_stops"] == 1
    stored = next(p for p in bus.js.published if p.subject == bus.names.future("r", "3"))
    error = Envelope.decode(stored.data, expect="result").body["error"]
    assert error["code"] == "guardrail_exceeded" and error["details"]["guardrail"] == "twice"
    assert error["details"]["future"] == "3"


async def test_a_paused_call_waits_is_journalled_once_and_a_cancel_ends_it(
        guarded: tuple[LocalController, FakeBus, Path]) -> None:
    lc, bus, limits = guarded
    limits.write_text("limits: [{name: once, iterations: 1, agent: A, action: pause}]\n")
    paused = bus.names.run_event("r", "paused")
    async with started(lc):
        await call(lc, "1")
        msg = await call(lc, "2")
        held = lc.book.held["r.2"]
        assert held.state is CallState.PAUSED and lc.book.paused["r"] == [held]
        assert bus.subjects().count(paused) == 1 and msg.acked == 0
        for _ in range(3):  # checked again (a resume this controller did not hear): still
            await lc.guardrails.readmit(held)  # type: ignore[union-attr]  # paused, said once
        assert held.state is CallState.PAUSED and bus.subjects().count(paused) == 1
        assert lc.book.paused["r"] == [held]
        await lc.cancels.cancel("r")
    assert held.state is CallState.DONE and msg.acked == 1
