"""Per-instance queues: priority order, FIFO within a priority, load, and least-loaded choice."""

from __future__ import annotations

import time
from typing import Any

from nalar_common.cluster import InstanceInfo, PolicySnapshot
from nalar_local_controller.queues import Held, InstanceQueue
from nalar_local_controller.service import LocalController
from nalar_local_controller.settings import LocalControllerSettings


def _held(fut: str, priority: int = 0, session: str = "s") -> Held:
    return Held(msgs=[], data=b"", headers={}, run="r", future=fut, agent="A",
                session=session, priority=priority, deps=[], base_priority=priority)


def _bare_lc() -> LocalController:
    lc = LocalController.__new__(LocalController)
    lc.view = _View()  # type: ignore[assignment]
    lc.settings = LocalControllerSettings()
    lc.store = None
    lc._routes, lc._done_actions = {}, {}
    return lc


def _queue(iid: str, concurrency: int = 1) -> InstanceQueue:
    return InstanceQueue(InstanceInfo(instance=iid, host=iid, node="n1", agent="A",
                                      concurrency=concurrency))


def test_priority_then_fifo() -> None:
    q = _queue("i1")
    for fut, prio in [("1", 0), ("2", 5), ("3", 0), ("4", 5)]:
        q.push(_held(fut, prio))
    assert [q.pop().future for _ in range(4)] == ["2", "4", "1", "3"]  # type: ignore[union-attr]
    assert q.pop() is None


def test_within_a_priority_the_earliest_run_deadline_goes_first() -> None:
    """An older run's call (earlier deadline) runs before a newer run's that arrived first,
    so a run already under way finishes first; FIFO queues keep arrival order."""
    edf, fifo = _queue("i1"), InstanceQueue(InstanceInfo(instance="i2", host="i2", node="n1",
                                                         agent="A", concurrency=1), edf=False)
    for q in (edf, fifo):
        for fut, deadline in [("new", 200.0), ("old", 100.0), ("none", None)]:
            h = _held(fut)
            h.deadline = deadline
            q.push(h)
    assert [edf.pop().future for _ in range(3)] == ["old", "new", "none"]  # type: ignore[union-attr]
    assert [fifo.pop().future for _ in range(3)] == ["new", "old", "none"]  # type: ignore[union-attr]


def test_load_counts_queue_and_inflight_per_slot() -> None:
    q = _queue("i1", concurrency=2)
    q.push(_held("1"))
    q.inflight["r.2"] = _held("2")
    assert q.load() == 1.0 and q.free_slots == 1 and q.sessions() == 1


class _View:
    snapshot: Any = None


def test_choose_least_loaded_then_session_pin() -> None:
    lc = _bare_lc()
    busy, idle = _queue("busy"), _queue("idle")
    busy.push(_held("1", session="x"))
    lc.queues = {"busy": busy, "idle": idle}
    assert lc._choose(_held("9")) is idle
    lc.view.snapshot = PolicySnapshot(sessions={"s": {"A": "busy"}})
    assert lc._choose(_held("9", session="s")) is busy
    assert lc._choose(_held("9", session="other")) is idle


def test_a_session_stays_where_its_cache_is_until_the_queue_is_too_long() -> None:
    """Affinity with spill-over, decided locally: the instance that served the session last
    keeps it while waiting there costs less than recomputing its KV context elsewhere, and
    its queue is at most `spill_queue` calls per slot."""
    lc = _bare_lc()
    home, other = _queue("home"), _queue("other")
    lc.queues = {"home": home, "other": other}
    home.finished(_held("0", session="s"), 0.1, 300, 20_000)
    assert home.holds("s") and home.context["s"] == 20_000
    for i in range(2):
        home.push(_held(f"q{i}", session="x"))
    # 2 queued x 0.1 s < 20,000 tokens at 8,000 tokens/s: still worth waiting
    assert lc._choose(_held("9", session="s")) is home
    home.push(_held("q2", session="x"))
    assert lc._choose(_held("9", session="s")) is other  # 3 > 2 per slot: spill over
    # the policy's affinity stands in for a session this controller never served
    lc.view.snapshot = PolicySnapshot(affinity={"t": {"A": "home"}})
    home.take(lambda h: False)
    home.push(_held("q3", session="x"))
    assert lc._choose(_held("9", session="t")) is home


def test_a_zero_weight_leaves_an_instance_out() -> None:
    lc = _bare_lc()
    a, b = _queue("a"), _queue("b")
    b.push(_held("1", session="x"))
    lc.queues = {"a": a, "b": b}
    lc.view.snapshot = PolicySnapshot(instance_weights={"A": {"a": 0.0, "b": 1.0}})
    assert lc._choose(_held("9", session="y")) is b


def test_waiting_estimates_the_wait_of_each_queued_session() -> None:
    q = _queue("i1")
    q.service_s = 1.0
    running = _held("0", session="long")
    running.dispatched_at = 100.0
    q.inflight[running.key] = running
    q.context["vip"] = 800
    for fut, session, prio in [("1", "x", 0), ("2", "vip", 3), ("3", "vip", 0)]:
        q.push(_held(fut, session=session, priority=prio))
    rows = {w["session"]: w for w in q.waiting(now=104.0)}
    # running 4 s of a 1 s mean: expect 2 s more (half what it ran); vip is behind it
    assert rows["vip"]["wait_s"] == 2.0 and rows["vip"]["calls"] == 2
    assert rows["vip"]["priority"] == 3 and rows["vip"]["context_tokens"] == 800
    assert rows["x"]["wait_s"] == 3.0 and not rows["x"]["running_here"]
    assert q.work_s(104.0) == 5.0


class _Msg:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.acked = 0

    async def ack(self) -> None:
        self.acked += 1


async def test_stale_done_is_ignored_and_current_done_frees_the_slot() -> None:
    """A `done` from an earlier dispatch of the same call (e.g. before a controller restart)
    must neither ack the call nor free the slot of the copy that is running now."""
    lc = LocalController.__new__(LocalController)
    lc.settings = LocalControllerSettings()
    lc.stats = {"completed": 0}
    lc._outbox = []

    async def no_flush() -> None:
        return None

    lc._flush_outbox = no_flush  # type: ignore[method-assign]
    q = _queue("i1")
    handle = _Msg({})
    held = _held("1")
    held.msgs = [handle]
    held.instance, held.token = "i1", "n1:2"
    q.inflight[held.key] = held
    lc.queues = {"i1": q}
    lc.held = {held.key: held}
    base = {"Nalar-Run": "r", "Nalar-Future": "1", "Nalar-Instance": "i1"}
    await lc._on_done(_Msg({**base, "Nalar-Dispatch": "n1:1"}))  # stale
    assert held.key in lc.held and q.free_slots == 0 and handle.acked == 0
    await lc._on_done(_Msg({**base, "Nalar-Dispatch": "n1:2"}))  # current
    assert held.key not in lc.held and q.free_slots == 1 and handle.acked == 1


def test_stateful_queue_runs_one_call_per_session_at_a_time() -> None:
    q = InstanceQueue(InstanceInfo(instance="i1", host="h", node="n1", agent="A",
                                   concurrency=8, stateful=True))
    for fut, session in [("1", "s"), ("2", "s"), ("3", "t"), ("4", "s")]:
        q.push(_held(fut, session=session))
    first = q.pop()
    assert first is not None and first.future == "1"
    q.inflight[first.key] = first
    nxt = q.pop()
    assert nxt is not None and nxt.future == "3"  # s is busy: t goes first, s waits in order
    q.inflight[nxt.key] = nxt
    assert q.pop() is None
    del q.inflight[first.key]
    second = q.pop()
    assert second is not None and second.future == "2"
    q.inflight[second.key] = second
    assert q.pop() is None  # "4" waits for "2"


def test_new_priorities_reorder_a_queue() -> None:
    q = _queue("i1")
    for fut, session in [("1", "a"), ("2", "b"), ("3", "c")]:
        q.push(_held(fut, session=session))
    assert q.reprioritize(lambda h: 10 if h.session == "c" else 0)
    assert [q.pop().future for _ in range(3)] == ["3", "1", "2"]  # type: ignore[union-attr]


def test_take_moves_a_sessions_queued_calls_in_order() -> None:
    q = _queue("i1")
    for fut, session in [("1", "s"), ("2", "t"), ("3", "s")]:
        q.push(_held(fut, session=session))
    moved = q.take(lambda h: h.session != "s")
    assert [h.future for h in moved] == ["1", "3"]
    assert q.queued == 1 and q.queued_sessions() == ["t"]


async def test_snapshot_moves_a_sessions_queued_calls_and_raises_its_priority() -> None:
    """Applying a snapshot: the routed session's queued calls move to the target instance
    (journalled as `migrated`), its priority goes up, calls already running stay."""
    from nalar_common.subjects import Names

    published: list[str] = []

    class _NC:
        async def publish(self, subject: str, payload: bytes, **_: Any) -> None:
            published.append(subject)

    class _Bus:
        names = Names()
        nc = _NC()

    lc = _bare_lc()
    lc.bus, lc.names, lc.node = _Bus(), Names(), "n1"  # type: ignore[assignment]
    lc.stats = {"migrated": 0, "dispatched": 0}
    lc._outbox, lc._applied_rev, lc._dispatch_seq = [], 7, 0
    busy = _queue("busy")
    idle = _queue("idle")
    running = _held("0", session="vip")
    busy.inflight[running.key] = running
    for fut, session in [("1", "x"), ("2", "vip"), ("3", "vip")]:
        busy.push(_held(fut, session=session))
    lc.queues = {"busy": busy, "idle": idle}

    async def no_flush() -> None:
        return None

    lc._flush_outbox = no_flush  # type: ignore[method-assign]
    lc._dispatch = lambda queue: None  # type: ignore[method-assign]
    snap = PolicySnapshot(sessions={"vip": {"A": "idle"}}, priorities={"vip": 5})
    await lc._apply_snapshot(snap)
    assert busy.queued == 1 and busy.pop().future == "1"  # type: ignore[union-attr]
    assert [idle.pop().future, idle.pop().future] == ["2", "3"]  # type: ignore[union-attr]
    assert running.key in busy.inflight  # a running call finishes where it is
    assert lc.stats["migrated"] == 2
    assert published == ["nalar.run.r.migrated"] * 2


def test_an_idle_instance_takes_queued_calls_not_tied_elsewhere() -> None:
    """Work stealing between instances of one agent on a node: a new or idle instance takes
    queued calls from the longest queue, leaving those pinned there and those whose session's
    cache is there while that queue is short."""
    lc = _bare_lc()
    lc.stats = {"stolen": 0, "dispatched": 0}
    lc._dispatch = lambda queue: None  # type: ignore[method-assign]
    busy, idle = _queue("busy"), _queue("idle")
    busy.inflight["r.0"] = _held("0", session="x")
    busy.finished(_held("c", session="cached"), 0.1, None, None)
    pinned = _held("1", session="p")
    pinned.pinned = "busy"
    for h in (pinned, _held("2", session="cached"), _held("3", session="free")):
        busy.push(h)
    lc.queues = {"busy": busy, "idle": idle}
    lc.settings.spill_queue = 3  # 3 queued: short enough to wait for the cache
    lc._steal(idle)
    assert [h.future for h in idle.take(lambda h: False)] == ["3"]
    assert busy.queued == 2
    lc.settings.spill_queue = 1  # now too long: the cached session spills over too
    lc._steal(idle)
    assert [h.future for h in idle.take(lambda h: False)] == ["2"]


def test_sticky_placement_keeps_a_session_on_one_instance_and_never_steals() -> None:
    """The static baseline: a session's calls go to the instance its hash names whatever
    the queues, and an idle instance takes nothing."""
    lc = _bare_lc()
    lc.settings.placement = "sticky"
    lc.stats = {"stolen": 0, "dispatched": 0}
    queues = {iid: _queue(iid) for iid in ("a", "b", "c")}
    lc.queues = dict(queues)
    homes = {s: lc._choose(_held("1", session=s)) for s in ("s1", "s2", "s3", "s4", "s5")}
    assert len({id(q) for q in homes.values()}) > 1  # sessions spread over instances
    home = homes["s1"]
    assert home is not None
    for i in range(5):
        home.push(_held(f"q{i}", session="s1"))
    assert lc._choose(_held("9", session="s1")) is home  # a long queue changes nothing
    idle = next(q for q in queues.values() if q is not home)
    lc._steal(idle)
    assert home.queued == 5 and idle.queued == 0 and lc.stats["stolen"] == 0


def test_creation_placement_joins_the_shortest_queue_and_ignores_the_cache() -> None:
    """The Ayo-like baseline: the shortest queue when the call is placed, no KV-cache
    affinity, no policy routes, no stealing later."""
    lc = _bare_lc()
    lc.settings.placement = "creation"
    lc.stats = {"stolen": 0, "dispatched": 0}
    home, other = _queue("home"), _queue("other")
    lc.queues = {"home": home, "other": other}
    home.finished(_held("0", session="s"), 0.1, 300, 250)
    home.push(_held("q0", session="x"))
    assert lc._choose(_held("9", session="s")) is other  # its cache is at home: ignored
    lc.view.snapshot = PolicySnapshot(sessions={"s": {"A": "home"}})
    assert lc._choose(_held("9", session="s")) is other
    home.push(_held("q1", session="x"))
    lc._steal(other)
    assert home.queued == 2 and lc.stats["stolen"] == 0


def test_a_session_leaves_its_cache_when_waiting_costs_more_than_recomputing_it() -> None:
    """Behind a long call (it ran 4 s already, so it is likely a long one) a short context is
    cheaper to recompute on an idle instance than to wait for."""
    lc = _bare_lc()
    home, other = _queue("home"), _queue("other")
    lc.queues = {"home": home, "other": other}
    home.finished(_held("0", session="s"), 0.5, 300, 800)
    running = _held("long", session="x")
    running.dispatched_at = time.time() - 4.0
    home.inflight[running.key] = running
    assert lc._choose(_held("9", session="s")) is other
    home.inflight.clear()
    assert lc._choose(_held("9", session="s")) is home  # free there again: the cache wins
