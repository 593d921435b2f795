"""Per-instance queues: priority order, FIFO within a priority, load, stateful order."""

from __future__ import annotations

from nalar_common.cluster import InstanceInfo
from nalar_local_controller.held import CallState, Held
from nalar_local_controller.queues import InstanceQueue


def _held(fut: str, priority: int = 0, session: str = "s") -> Held:
    return Held(msgs=[], data=b"", headers={}, run="r", future=fut, agent="A",
                session=session, priority=priority, deps=[], base_priority=priority)


def test_a_queued_call_says_so_and_a_dispatched_one_is_named_by_its_token() -> None:
    q, held = _queue("i1"), _held("1")
    assert held.state is CallState.ADMITTING and not held.dispatched
    q.push(held)
    assert held.state is CallState.QUEUED and held.instance == "i1"
    popped = q.pop()
    assert popped is held
    held.dispatch("n1:7", 5.0)
    assert held.dispatched and held.token == "n1:7" and held.dispatched_at == 5.0
    held.undispatch()
    assert held.state is CallState.BACKOFF and not held.token and held.instance is None


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
