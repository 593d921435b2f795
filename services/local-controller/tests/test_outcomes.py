"""How calls end or go round again, without a server: a host's `done` (stale or current),
a retry, a lost instance, dead letters, the hooks' order, deadlines, cancellation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fakebus import FakeMsg
from lc_fakes import call_headers, controller, held_call, instance, started
from nalar_common.calls import CallSpec, encode_result
from nalar_common.cluster import PolicySnapshot
from nalar_common.envelope import Envelope
from nalar_common.errors import AgentError
from nalar_common.futures import FutureResult
from nalar_common.wire import ControlReply, ControlRequest
from nalar_local_controller.held import CallState, Held
from nalar_local_controller.hooks import CallHook, Hooks
from nalar_local_controller.replay import ReplayHook
from nalar_local_controller.runs import RunFacts
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError


def done(held: Held, status: str = "ok", token: str | None = None, **extra: str) -> FakeMsg:
    return FakeMsg({"Nalar-Run": held.run, "Nalar-Future": held.future,
                    "Nalar-Dispatch": held.token if token is None else token,
                    "Nalar-Status": status, **extra})


async def admit(lc: object, *futures: str, **kw: str) -> list[Held]:
    out = []
    for fut in futures:
        await lc.admission.on_call(FakeMsg(call_headers(fut, **kw)))  # type: ignore[attr-defined]
        out.append(lc.book.held[f"{kw.get('run', 'r')}.{fut}"])  # type: ignore[attr-defined]
    return out


async def test_a_stale_done_is_ignored_and_the_current_one_frees_the_slot(
        tmp_path: Path) -> None:
    """A `done` from an earlier dispatch of the same call must neither ack the call nor free
    the slot of the copy that runs now; the current one acks it and sends the next call."""
    lc, _ = controller(tmp_path, instance("i1"))
    async with started(lc):
        first, second = await admit(lc, "1", "2")
        assert first.dispatched and second.state is CallState.QUEUED
        await lc._on_done(done(first, token="n1:999"))
        assert lc.book.holds(first) and first.msgs[0].acked == 0
        await lc._on_done(done(first))
        assert not lc.book.holds(first) and first.msgs[0].acked == 1
        assert first.state is CallState.DONE and second.dispatched
        assert lc.stats["completed"] == 1


async def test_a_retry_frees_the_slot_and_places_the_next_attempt_later(
        tmp_path: Path) -> None:
    lc, _ = controller(tmp_path, instance("i1"))
    async with started(lc):
        (held,) = await admit(lc, "1")
        first = held.token
        await lc._on_done(done(held, "retry", **{"Nalar-Retry-After": "0.05"}))
        assert lc.book.holds(held) and held.state is CallState.BACKOFF
        assert held.headers["Nalar-Attempt"] == "2" and held.msgs[0].acked == 0
        assert lc.book.queues["i1"].free_slots == 1 and lc.stats["retried"] == 1
    assert held.dispatched and held.token != first  # the next attempt, after Retry-After
    assert held.msgs[0].acked == 0  # still claimed: acked when an attempt ends it


async def test_an_instance_lost_runs_its_calls_again_or_dead_letters_them(
        tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1", concurrency=2), instance("i2"),
                         max_deliver=1, redelivery_backoff_s=60.0)
    async with started(lc):
        held, other = await admit(lc, "1", "2")
        lost = [h for h in (held, other) if h.instance == "i1"]
        del lc.view.instances["i1"]
        lc.recovery.sync_instances()  # delivered once already: past max_deliver
    # the task group has run what the loss started: the dead letters are written
    assert lost and all(h.state is CallState.DONE for h in lost)
    assert lc.stats["dead_lettered"] == len(lost)
    assert any(s.startswith("nalar.dlq.") for s in bus.subjects())


async def test_a_lost_done_is_found_in_the_futures_stream(tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1"))
    async with started(lc):
        (held,) = await admit(lc, "1")
        bus.stored[bus.names.future("r", "1")] = object()
        await lc.recovery.reconcile(older_than=-1.0)
    assert held.state is CallState.DONE and held.msgs[0].acked == 1
    assert lc.stats["reconciled"] == 1


async def test_a_call_past_its_deadline_fails_unless_it_runs(tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1"))
    async with started(lc):
        running, queued = await admit(lc, "1", "2", **{"Nalar-Deadline": "1"})
        await lc.hooks.tick(now=2.0)
    assert running.dispatched and queued.state is CallState.DONE
    assert lc.stats["timed_out"] == 1 and lc.book.queues["i1"].queued == 0
    assert bus.names.future("r", "2") in bus.subjects()


async def test_a_cancelled_runs_waiting_calls_fail_and_later_ones_are_refused(
        tmp_path: Path) -> None:
    lc, _ = controller(tmp_path, instance("i1"))
    async with started(lc):
        running, queued = await admit(lc, "1", "2")
        await lc.cancels.cancel("r")
        assert running.dispatched and queued.state is CallState.DONE
        msg = FakeMsg(call_headers("3"))
        await lc.admission.on_call(msg)
    assert msg.acked == 1 and "r.3" not in lc.book.held


async def test_hooks_run_in_order_and_the_first_that_takes_a_call_stops_the_rest() -> None:
    seen: list[str] = []

    class Mark(CallHook):
        def __init__(self, name: str, take: bool) -> None:
            self.name, self.take = name, take

        async def before_admit(self, held: Held, facts: RunFacts) -> bool:
            seen.append(self.name)
            return self.take

        def revisions(self) -> dict[str, str]:
            return {self.name: "1"}

    hooks = Hooks([Mark("a", False), Mark("b", True), Mark("c", False)])
    facts = RunFacts("r", None, "wf", "s", 0.0)  # type: ignore[arg-type]
    assert await hooks.before_admit(held_call(), facts)
    assert seen == ["a", "b"]
    assert hooks.revisions() == {"a": "1", "b": "1", "c": "1"}
    assert not await Hooks([]).before_place(held_call(), facts)


async def test_a_snapshot_moves_a_sessions_queued_calls_and_raises_its_priority(
        tmp_path: Path) -> None:
    """Applying a snapshot: the routed session's queued calls move to the target instance
    (journalled as `migrated`), its priority goes up, calls already running stay."""
    lc, bus = controller(tmp_path, instance("busy"), instance("idle"))
    busy, idle = lc.book.queues["busy"], lc.book.queues["idle"]
    running = held_call("0", session="vip")
    busy.inflight[running.key] = running
    calls = [held_call(f, session=s) for f, s in (("1", "x"), ("2", "vip"), ("3", "vip"))]
    for h in calls:
        lc.book.held[h.key] = h
        busy.push(h)
    idle.inflight["r.9"] = held_call("9")  # busy as well: nothing is dispatched meanwhile
    async with started(lc):
        await lc.migration.apply(PolicySnapshot(sessions={"vip": {"A": "idle"}},
                                                priorities={"vip": 5}))
    assert [h.future for h in idle.take(lambda h: False)] == ["2", "3"]
    assert [h.future for h in busy.take(lambda h: False)] == ["1"]
    assert running.key in busy.inflight and calls[1].priority == 5
    assert lc.stats["migrated"] == 2
    assert bus.subjects().count(bus.names.run_event("r", "migrated")) == 2


async def test_a_call_ended_while_its_place_was_pending_is_never_dispatched(
        tmp_path: Path) -> None:
    """One argument fails, another resolves right after: the call fails once and is not
    dispatched (nor forwarded) afterwards, so no slot is held by a call nobody acks."""
    lc, bus = controller(tmp_path, instance("i1"))
    held = held_call("3")
    held.deps, held.waiting, held.state = ["1", "2"], {"1", "2"}, CallState.WAITING
    lc.book.held[held.key] = held
    _, failed = encode_result(error=AgentError("boom"))
    _, fine = encode_result(value=1)
    async with started(lc):
        lc.admission._dep_resolved(held, FutureResult("r", "1", failed,
                                                      {"Nalar-Status": "error"}))
        lc.admission._dep_resolved(held, FutureResult("r", "2", fine, {"Nalar-Status": "ok"}))
        await lc.admission.place(held)  # a place that was already on its way
        await lc.dispatcher.forward(held, "n2")
    assert held.state is CallState.DONE and held.msgs[0].acked == 1
    assert lc.book.queues["i1"].free_slots == 1 and lc.stats["dispatched"] == 0
    assert bus.subjects().count(bus.names.future("r", "3")) == 1
    assert not [p for p in bus.js.published if p.subject.startswith("nalar.call.")]


async def test_each_call_of_a_cancelled_run_names_its_own_place(tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1"))
    async with started(lc):
        await admit(lc, "1", "2", "3")
        await lc.cancels.cancel("r")
    for fut in ("2", "3"):
        stored = next(p for p in bus.js.published if p.subject == bus.names.future("r", fut))
        error = Envelope.decode(stored.data, expect="result").body["error"]
        assert error["code"] == "cancelled" and error["details"]["future"] == fut


async def test_a_lost_dispatch_runs_again_as_the_next_attempt(tmp_path: Path) -> None:
    """Not stored, and its host says it does not run it: the dispatch was lost."""
    lc, _ = controller(tmp_path, instance("i1"), redelivery_backoff_s=0.01)
    asked: list[ControlRequest] = []

    async def host_says(host: str, req: ControlRequest) -> ControlReply:
        asked.append(req)
        return ControlReply(ok=True, running=())

    lc.recovery.control = host_says
    async with started(lc):
        (held,) = await admit(lc, "1")
        token = held.token
        await lc.recovery.reconcile(older_than=-1.0)
        assert asked == [ControlRequest.running([token])]
        assert held.state is CallState.BACKOFF and held.headers["Nalar-Attempt"] == "2"
        assert lc.book.queues["i1"].free_slots == 1 and lc.stats["reconciled"] == 1
    assert held.dispatched and held.token != token  # after the backoff: dispatched anew


async def test_a_snapshot_provisions_on_a_host_with_a_free_slot_once(tmp_path: Path) -> None:
    lc, _ = controller(tmp_path, instance("i1", slots_free=1))
    asked: list[tuple[str, ControlRequest]] = []

    async def host_says(host: str, req: ControlRequest) -> ControlReply:
        asked.append((host, req))
        return ControlReply(ok=True, status="starting", agent=req.agent)

    lc.provisioning.control = host_says  # type: ignore[method-assign]
    snap = PolicySnapshot(provisions=[{"id": "p1", "node": "n1", "agent": "B"},
                                      {"id": "p2", "node": "n2", "agent": "B"}])
    async with started(lc):
        lc.provisioning.apply(snap)
        lc.provisioning.apply(snap)  # the same action in the next snapshot: done already
    assert asked == [("h-i1", ControlRequest.assign("B"))]
    assert lc.stats["provisioned"] == 1


def replay_call(fut: str, method: str = "m") -> Held:
    spec = CallSpec(run="r2", future=fut, session="s", agent="A", method=method, args=[1])
    headers = {**spec.headers(), "Nalar-Method": method}
    return Held(msgs=[FakeMsg(headers)], data=spec.encode(), headers=headers, run="r2",
                future=fut, agent="A", session="s", priority=0, deps=[], replay_of="r1")


async def test_a_replay_answers_an_overridden_call_and_refuses_to_run_a_tool(
        tmp_path: Path) -> None:
    lc, bus = controller(tmp_path, instance("i1", tools=["act"]))
    facts = RunFacts("r2", None, "wf", "s", 0.0, replay_of="r1",  # type: ignore[arg-type]
                     overrides={"1": 42})
    hook = next(h for h in lc.hooks.hooks if isinstance(h, ReplayHook))
    overridden, tool, live = replay_call("1"), replay_call("2", "act"), replay_call("3")
    async with started(lc):
        for held in (overridden, tool, live):
            lc.book.held[held.key] = held
        assert await hook.before_place(overridden, facts)
        assert await hook.before_place(tool, facts)
        assert not await hook.before_place(live, facts)  # asked anew: it runs
    def result(fut: str) -> dict[str, object]:
        stored = next(p for p in bus.js.published if p.subject == bus.names.future("r2", fut))
        return dict(Envelope.decode(stored.data, expect="result").body)
    assert result("1")["value"] == 42 and result("1")["executor"] == "replay:override"
    assert result("2")["error"]["code"] == "replay_diverged"  # type: ignore[index]
    assert overridden.msgs[0].acked == tool.msgs[0].acked == 1 and lc.book.holds(live)


class FakeKV:
    """A KV bucket with compare-and-set, as the pins use it."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}

    async def get(self, key: str) -> Any:
        if key not in self.data:
            raise KeyNotFoundError
        value, rev = self.data[key]
        return type("Entry", (), {"value": value, "revision": rev})()

    async def create(self, key: str, value: bytes) -> None:
        if key in self.data:
            raise KeyWrongLastSequenceError
        self.data[key] = (value, 1)

    async def update(self, key: str, value: bytes, last: int) -> None:
        if self.data.get(key, (b"", 0))[1] != last:
            raise KeyWrongLastSequenceError
        self.data[key] = (value, last + 1)


async def test_a_session_stays_pinned_while_its_instance_lives_and_moves_when_it_is_gone(
        tmp_path: Path) -> None:
    lc, _ = controller(tmp_path, instance("a", stateful=True), instance("b", stateful=True))
    lc.pins.kv = kv = FakeKV()
    first = await lc.pins.pin(held_call("1"), lc.dispatcher.choose)
    assert first in ("a", "b")
    assert await lc.pins.pin(held_call("2"), lc.dispatcher.choose) == first
    other = "b" if first == "a" else "a"
    del lc.view.instances[first]
    lc.recovery.sync_instances()
    assert await lc.pins.pin(held_call("3"), lc.dispatcher.choose) == other
    assert kv.data[lc.names.pin_key("A", "s")] == (other.encode(), 2)
    kv.data[lc.names.pin_key("A", "s")] = (b"elsewhere", 5)  # another controller's pin wins
    lc.view.instances["elsewhere"] = instance("elsewhere", node="n2", stateful=True)
    assert await lc.pins.pin(held_call("4"), lc.dispatcher.choose) == "elsewhere"
