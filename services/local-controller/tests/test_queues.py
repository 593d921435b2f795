"""Per-instance queues: priority order, FIFO within a priority, load, and least-loaded choice."""

from __future__ import annotations

from typing import Any

from nalar_common.cluster import InstanceInfo
from nalar_local_controller.queues import Held, InstanceQueue
from nalar_local_controller.service import LocalController


def _held(fut: str, priority: int = 0, session: str = "s") -> Held:
    return Held(msg=None, data=b"", headers={}, run="r", future=fut, agent="A",
                session=session, priority=priority, deps=[])


def _queue(iid: str, concurrency: int = 1) -> InstanceQueue:
    return InstanceQueue(InstanceInfo(instance=iid, host=iid, node="n1", agent="A",
                                      concurrency=concurrency))


def test_priority_then_fifo() -> None:
    q = _queue("i1")
    for fut, prio in [("1", 0), ("2", 5), ("3", 0), ("4", 5)]:
        q.push(_held(fut, prio))
    assert [q.pop().future for _ in range(4)] == ["2", "4", "1", "3"]  # type: ignore[union-attr]
    assert q.pop() is None


def test_load_counts_queue_and_inflight_per_slot() -> None:
    q = _queue("i1", concurrency=2)
    q.push(_held("1"))
    q.inflight["r.2"] = _held("2")
    assert q.load() == 1.0 and q.free_slots == 1 and q.sessions() == 1


class _View:
    snapshot: Any = None


def test_choose_least_loaded_then_session_pin() -> None:
    lc = LocalController.__new__(LocalController)
    lc.view = _View()  # type: ignore[assignment]
    busy, idle = _queue("busy"), _queue("idle")
    busy.push(_held("1"))
    lc.queues = {"busy": busy, "idle": idle}
    assert lc._choose(_held("9")) is idle

    class Snap:
        sessions = {"s": {"A": "busy"}}

    lc.view.snapshot = Snap()
    assert lc._choose(_held("9", session="s")) is busy
    assert lc._choose(_held("9", session="other")) is idle
