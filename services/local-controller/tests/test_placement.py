"""Placement as pure functions of the node's queues and the policy snapshot: the pin, the
policy's routes and weights, KV-cache affinity with spill-over, the baselines, stealing."""

from __future__ import annotations

import time

from nalar_common.cluster import InstanceInfo, PolicySnapshot
from nalar_local_controller import placement
from nalar_local_controller.held import Held
from nalar_local_controller.placement import Rules
from nalar_local_controller.queues import InstanceQueue

DYNAMIC = Rules()


def _held(fut: str, priority: int = 0, session: str = "s") -> Held:
    return Held(msgs=[], data=b"", headers={}, run="r", future=fut, agent="A",
                session=session, priority=priority, deps=[], base_priority=priority)


def _queue(iid: str, concurrency: int = 1) -> InstanceQueue:
    return InstanceQueue(InstanceInfo(instance=iid, host=iid, node="n1", agent="A",
                                      concurrency=concurrency))


def choose(held: Held, queues: dict[str, InstanceQueue], snap: PolicySnapshot | None = None,
           rules: Rules = DYNAMIC) -> InstanceQueue | None:
    return placement.choose(held, queues.values(), snap, rules, time.time())


def test_least_loaded_then_the_policys_route() -> None:
    busy, idle = _queue("busy"), _queue("idle")
    busy.push(_held("1", session="x"))
    queues = {"busy": busy, "idle": idle}
    assert choose(_held("9"), queues) is idle
    snap = PolicySnapshot(sessions={"s": {"A": "busy"}})
    assert choose(_held("9", session="s"), queues, snap) is busy
    assert choose(_held("9", session="other"), queues, snap) is idle


def test_a_pinned_call_goes_to_its_instance_and_no_instance_means_none() -> None:
    a, b = _queue("a"), _queue("b")
    held = _held("1")
    held.pinned = "b"
    assert choose(held, {"a": a, "b": b}) is b
    other_agent = Held(msgs=[], data=b"", headers={}, run="r", future="2", agent="B",
                       session="", priority=0, deps=[])
    assert choose(other_agent, {"a": a, "b": b}) is None


def test_a_session_stays_where_its_cache_is_until_the_queue_is_too_long() -> None:
    home, other = _queue("home"), _queue("other")
    queues = {"home": home, "other": other}
    home.finished(_held("0", session="s"), 0.1, None, None)
    home.push(_held("q0", session="x"))
    home.push(_held("q1", session="y"))
    assert choose(_held("9", session="s"), queues) is home
    home.push(_held("q2", session="z"))
    assert choose(_held("9", session="s"), queues) is other  # 3 > 2 per slot: spill over
    snap = PolicySnapshot(affinity={"t": {"A": "home"}})
    home.take(lambda h: False)
    assert choose(_held("9", session="t"), queues, snap) is home


def test_a_zero_weight_leaves_an_instance_out() -> None:
    a, b = _queue("a"), _queue("b")
    snap = PolicySnapshot(instance_weights={"A": {"a": 0.0, "b": 1.0}})
    assert choose(_held("9", session="y"), {"a": a, "b": b}, snap) is b


def test_a_session_leaves_its_cache_when_waiting_costs_more_than_recomputing_it() -> None:
    """Behind a long call (it ran 4 s already, so it is likely a long one) a short context is
    cheaper to recompute on an idle instance than to wait for."""
    home, other = _queue("home"), _queue("other")
    queues = {"home": home, "other": other}
    home.finished(_held("0", session="s"), 0.5, 300, 800)
    running = _held("long", session="x")
    running.dispatched_at = time.time() - 4.0
    home.inflight[running.key] = running
    assert choose(_held("9", session="s"), queues) is other
    home.inflight.clear()
    assert choose(_held("9", session="s"), queues) is home  # free there again: the cache wins


def test_sticky_placement_keeps_a_session_on_one_instance_and_never_steals() -> None:
    """The static baseline: a session's calls go to the instance its hash names whatever
    the queues, and an idle instance takes nothing."""
    sticky = Rules(placement="sticky")
    queues = {iid: _queue(iid) for iid in ("a", "b", "c")}
    homes = {s: choose(_held("1", session=s), queues, rules=sticky)
             for s in ("s1", "s2", "s3", "s4", "s5")}
    assert len({id(q) for q in homes.values()}) > 1  # sessions spread over instances
    home = homes["s1"]
    assert home is not None
    for i in range(5):
        home.push(_held(f"q{i}", session="s1"))
    assert choose(_held("9", session="s1"), queues, rules=sticky) is home
    idle = next(q for q in queues.values() if q is not home)
    assert placement.steal(idle, queues.values(), None, sticky) == []
    assert home.queued == 5


def test_creation_placement_joins_the_shortest_queue_and_ignores_the_cache() -> None:
    """The Ayo-like baseline: the shortest queue when the call is placed, no KV-cache
    affinity, no policy routes, no stealing later."""
    creation = Rules(placement="creation")
    home, other = _queue("home"), _queue("other")
    queues = {"home": home, "other": other}
    home.finished(_held("0", session="s"), 0.1, 300, 250)
    home.push(_held("q0", session="x"))
    assert choose(_held("9", session="s"), queues, rules=creation) is other
    snap = PolicySnapshot(sessions={"s": {"A": "home"}})
    assert choose(_held("9", session="s"), queues, snap, creation) is other
    home.push(_held("q1", session="x"))
    assert placement.steal(other, queues.values(), None, creation) == []


def test_an_idle_instance_takes_queued_calls_not_tied_elsewhere() -> None:
    """Work stealing between instances of one agent on a node: an idle instance takes queued
    calls from the longest queue, leaving those pinned there and those whose session's cache
    is there while that queue is short."""
    busy, idle = _queue("busy"), _queue("idle")
    busy.inflight["r.0"] = _held("0", session="x")
    busy.finished(_held("c", session="cached"), 0.1, None, None)
    pinned = _held("1", session="p")
    pinned.pinned = "busy"
    for h in (pinned, _held("2", session="cached"), _held("3", session="free")):
        busy.push(h)
    queues = [busy, idle]
    taken = placement.steal(idle, queues, None, Rules(spill_queue=3))  # short: cache waits
    assert [h.future for h in taken] == ["3"] and busy.queued == 2
    taken = placement.steal(idle, queues, None, Rules(spill_queue=1))  # too long: it spills
    assert [h.future for h in taken] == ["2"] and busy.queued == 1


def test_the_policy_raises_a_sessions_priority_never_lowers_it() -> None:
    snap = PolicySnapshot(priorities={"vip": 5})
    assert placement.priority(_held("1", priority=2, session="vip"), snap) == 5
    assert placement.priority(_held("1", priority=7, session="vip"), snap) == 7
    assert placement.priority(_held("1", priority=2, session="x"), snap) == 2
    assert placement.priority(_held("1", priority=2, session="vip"), None) == 2
