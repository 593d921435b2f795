"""Admission without a server: a message becomes a held call, is placed and dispatched; bad,
repeated and redelivered messages; a run's facts read once."""

from __future__ import annotations

from pathlib import Path

from fakebus import FakeMsg
from lc_fakes import call_headers, controller, instance, started
from nalar_common.envelope import Envelope
from nalar_local_controller.held import CallState


async def test_a_call_is_held_queued_and_dispatched_to_its_instances_host(
        tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1"))
    async with started(lc):
        msg = FakeMsg(call_headers("1"))
        await lc.admission.on_call(msg)
        held = lc.book.held["r.1"]
        assert held.state is CallState.DISPATCHED and held.instance == "i1"
        sent = [p for p in bus.nc.published if p.subject == bus.names.exec("h-i1")]
        assert len(sent) == 1 and sent[0].reply == bus.names.done("n1")
        body = Envelope.decode(sent[0].data, expect="dispatch").body
        assert body["token"] == held.token and body["instance"] == "i1"
        assert body["revisions"] == {"access": lc.hooks.revisions()["access"]}
        assert msg.acked == 0  # acked only when its host reports it done
        assert lc.stats["admitted"] == 1 and lc.stats["dispatched"] == 1


async def test_a_call_without_its_headers_is_dead_lettered_and_never_delivered_again(
        tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1"))
    async with started(lc):
        headers = call_headers("1")
        del headers["Nalar-Agent"]
        msg = FakeMsg(headers)
        await lc.admission.on_call(msg)
    assert msg.termed == 1 and not lc.book.held
    assert any(s.startswith("nalar.dlq.") for s in bus.subjects())
    assert bus.names.future("r", "1") in bus.subjects()  # its future fails at once
    assert lc.stats["malformed"] == 1


async def test_the_same_call_twice_is_held_once_and_both_copies_are_acked_at_the_end(
        tmp_path: Path) -> None:
    lc, _ = controller(tmp_path, instance("i1"))
    async with started(lc):
        first, second = FakeMsg(call_headers("1")), FakeMsg(call_headers("1"))
        await lc.admission.on_call(first)
        await lc.admission.on_call(second)
        held = lc.book.held["r.1"]
        assert held.msgs == [first, second] and lc.stats["admitted"] == 1
        await lc._on_done(FakeMsg({"Nalar-Run": "r", "Nalar-Future": "1",
                                   "Nalar-Dispatch": held.token, "Nalar-Status": "ok"}))
    assert first.acked == second.acked == 1 and not lc.book.held


async def test_a_redelivered_call_whose_future_is_stored_is_acked_not_run(
        tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1"))
    bus.stored[bus.names.future("r", "1")] = object()

    async def stored(run: str, future: str) -> object:
        return bus.stored.get(bus.names.future(run, future))

    lc.admission.waiter.get = stored  # type: ignore[method-assign]
    async with started(lc):
        msg = FakeMsg(call_headers("1"), delivered=2)
        await lc.admission.on_call(msg)
    assert msg.acked == 1 and not lc.book.held


async def test_a_call_delivered_past_max_deliver_is_dead_lettered(tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1"), max_deliver=2)

    async def nothing(run: str, future: str) -> None:
        return None

    lc.admission.waiter.get = nothing  # type: ignore[method-assign]
    async with started(lc):
        msg = FakeMsg(call_headers("1"), delivered=3)
        await lc.admission.on_call(msg)
    assert msg.termed == 1 and lc.stats["dead_lettered"] == 1
    assert bus.names.run_event("r", "dead_lettered") in bus.subjects()


async def test_a_redelivered_call_runs_as_a_later_attempt(tmp_path: Path) -> None:
    lc, _ = controller(tmp_path, instance("i1"))

    async def nothing(run: str, future: str) -> None:
        return None

    lc.admission.waiter.get = nothing  # type: ignore[method-assign]
    async with started(lc):
        await lc.admission.on_call(FakeMsg(call_headers("1", **{"Nalar-Attempt": "2"}),
                                           delivered=2))
    assert lc.book.held["r.1"].headers["Nalar-Attempt"] == "3"


async def test_a_run_without_a_created_event_is_looked_up_once(tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1", concurrency=4))
    async with started(lc):
        for fut in ("1", "2", "3"):
            await lc.admission.on_call(FakeMsg(call_headers(fut)))
    assert bus.gets == 1 and len(lc.book.held) == 3


async def test_with_no_instance_anywhere_a_call_waits_for_one(tmp_path: Path) -> None:
    lc, _ = controller(tmp_path)
    async with started(lc):
        await lc.admission.on_call(FakeMsg(call_headers("1")))
        held = lc.book.held["r.1"]
        assert held.state is CallState.UNPLACED and lc.book.unplaced["A"] == [held]
        lc.view.instances["i1"] = instance("i1")
        lc.recovery.sync_instances()
        assert held.state is CallState.DISPATCHED and not lc.book.unplaced
