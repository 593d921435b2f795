"""The built-in policies on hand-made cluster states: affinity with spill-over, head-of-line
migration and its cost model, priority inheritance, rebalancing within bounds, and the ids
that make one-shot actions apply once."""

from __future__ import annotations

from typing import Any

import pytest
from nalar_global_controller.policies import (
    ClusterState,
    Decisions,
    HeadOfLineMigration,
    Rebalancer,
    SessionAffinity,
    SessionPriority,
    load_policies,
)
from nalar_global_controller.service import GlobalController
from nalar_global_controller.settings import GlobalControllerSettings


def _row(agent: str, node: str, host: str, **kw: Any) -> dict[str, Any]:
    return {"agent": agent, "node": node, "host": host, "concurrency": 1, "queue": 0,
            "inflight": 0, **kw}


def _decide(policy: Any, instances: dict[str, dict[str, Any]], now: float = 1000.0) -> Decisions:
    state = ClusterState(instances=instances, now=now)
    out = Decisions(state)
    policy.decide(state, out)
    return out


def test_affinity_keeps_a_session_home_until_its_queue_is_too_long() -> None:
    rows = {"a": _row("A", "n1", "h1", queue=2, recent_sessions=[["s", 10.0], ["t", 5.0]]),
            "b": _row("A", "n2", "h2", recent_sessions=[["t", 20.0]])}
    snap = _decide(SessionAffinity(spill_queue=2), rows).snapshot
    assert snap.affinity == {"s": {"A": "a"}, "t": {"A": "b"}}  # t was served by b last
    rows["a"]["queue"] = 3
    assert _decide(SessionAffinity(spill_queue=2), rows).snapshot.affinity["s"] == {"A": "b"}


def _hol_rows(**src: Any) -> dict[str, dict[str, Any]]:
    waiting = [{"session": "vip", "calls": 2, "wait_s": 3.0, "context_tokens": 800,
                "running_here": False, "priority": 0}]
    return {"busy": _row("A", "n1", "h1", queue=2, inflight=1, waiting=waiting, **src),
            "idle": _row("A", "n2", "h2"),
            "other": _row("B", "n2", "h2")}


def test_head_of_line_moves_a_waiting_session_to_an_idle_instance() -> None:
    snap = _decide(HeadOfLineMigration(), _hol_rows()).snapshot
    assert snap.migrations == [{"session": "vip", "agent": "A", "src": "busy", "dst": "idle"}]
    assert snap.sessions == {"vip": {"A": "idle"}}  # later calls follow it


def test_head_of_line_counts_the_lost_kv_cache() -> None:
    """3 s of waiting against 800 tokens recomputed: cheap at 8k tokens/s, not at 200/s."""
    rows = _hol_rows()
    rows["idle"]["engine"] = {"prefill_tokens_per_s": 200.0}  # 4 s to rebuild the context
    assert _decide(HeadOfLineMigration(), rows).snapshot.migrations == []
    rows["idle"]["recent_sessions"] = [["vip", 1.0]]  # its cache is there already: free
    assert _decide(HeadOfLineMigration(), rows).snapshot.migrations[0]["dst"] == "idle"


@pytest.mark.parametrize("why", ["stateful", "running_here", "no_idle"])
def test_head_of_line_leaves_some_sessions_alone(why: str) -> None:
    rows = _hol_rows(stateful=why == "stateful")
    if why == "running_here":
        rows["busy"]["waiting"][0]["running_here"] = True  # it waits for its own call
    if why == "no_idle":
        rows["idle"]["inflight"] = 1
    assert _decide(HeadOfLineMigration(), rows).snapshot.migrations == []


def test_session_priority_is_inherited_and_configurable() -> None:
    rows = {"a": _row("A", "n1", "h1", waiting=[{"session": "s", "priority": 4},
                                                 {"session": "t", "priority": 0}])}
    out = _decide(SessionPriority(sessions={"vip": 9}), rows).snapshot
    assert out.priorities == {"s": 4, "vip": 9}
    with pytest.raises(ValueError):
        SessionPriority(sessions={"vip": "high"})  # type: ignore[dict-item]
    d = Decisions()
    d.set_priority("s", 3, agent="A")
    assert d.snapshot.priority("s", "A") == 3 and d.snapshot.priority("s", "B") is None


def _pool(hot_queue: int, cold_queue: int = 0, **kw: Any) -> dict[str, dict[str, Any]]:
    common = {"startup_s": 1.0, "max_instances": 3, "min_instances": 1, **kw}
    return {
        "h1.Chat": _row("Chat", "n1", "h1", queue=hot_queue, inflight=1,
                        queued_work_s=hot_queue * 1.0, **common),
        "h2.Chat": _row("Chat", "n1", "h2", queue=hot_queue, inflight=1,
                        queued_work_s=hot_queue * 1.0, **common),
        "h3.Code": _row("Code", "n2", "h3", queue=cold_queue, **common),
        "h4.Code": _row("Code", "n2", "h4", queue=cold_queue, **common),
    }


def test_rebalancer_moves_an_instance_to_the_hot_agent_type() -> None:
    policy = Rebalancer()
    snap = _decide(policy, _pool(hot_queue=4)).snapshot
    assert snap.releases == [{"instance": "h3.Code", "node": "n2"}]
    assert snap.provisions == [{"agent": "Chat", "node": "n2"}]
    # then it waits for the new instance's start-up plus the cool-down before acting again
    assert _decide(policy, _pool(hot_queue=4), now=1002.0).snapshot.provisions == []
    assert _decide(policy, _pool(hot_queue=4), now=1003.5).snapshot.provisions


def test_rebalancer_prefers_a_free_slot_and_respects_bounds() -> None:
    rows = _pool(hot_queue=4)
    rows["h4.Code"]["slots_free"] = 1
    snap = _decide(Rebalancer(), rows).snapshot
    assert snap.provisions == [{"agent": "Chat", "node": "n2"}] and snap.releases == []
    at_max = _pool(hot_queue=4, max_instances=2)
    assert _decide(Rebalancer(), at_max).snapshot.provisions == []
    at_min = _pool(hot_queue=4, min_instances=2)
    assert _decide(Rebalancer(), at_min).snapshot.provisions == []


def test_rebalancer_does_not_pay_start_up_for_a_short_backlog() -> None:
    rows = _pool(hot_queue=4)
    for r in rows.values():
        r["startup_s"] = 10.0  # the backlog drains in 4 s: not worth a 10 s start
    assert _decide(Rebalancer(), rows).snapshot.provisions == []


def test_one_shot_actions_keep_their_id_then_expire() -> None:
    gc = GlobalController.__new__(GlobalController)
    gc.settings = GlobalControllerSettings(controller_id="gc1", action_ttl_s=3.0)
    gc._actions, gc._action_seq = {}, 0

    def snap_at(now: float, emit: bool) -> Any:
        d = Decisions()
        if emit:
            d.provision("Chat", "n2")
        gc._stamp_actions(d.snapshot, now)
        return d.snapshot

    first = snap_at(10.0, True).provisions
    assert first == [{"agent": "Chat", "node": "n2", "id": "gc1-1"}]
    assert snap_at(11.0, False).provisions == first  # kept for a controller that missed it
    assert snap_at(14.0, False).provisions == []
    assert snap_at(15.0, True).provisions[0]["id"] == "gc1-2"  # a new decision, a new id


def test_default_policies_load() -> None:
    names = [type(p).__name__ for p in load_policies(GlobalControllerSettings().policies)]
    assert names == ["LeastLoadedRouting", "SessionAffinity", "HeadOfLineMigration",
                     "SessionPriority"]
    configured = load_policies('[{"class": "nalar_global_controller.policies:Rebalancer", '
                               '"params": {"high": 2.0}}]')
    assert isinstance(configured[0], Rebalancer) and configured[0].high == 2.0


def test_rebalancer_moves_as_many_as_the_skew_needs_in_one_start_up() -> None:
    rows = _pool(hot_queue=4, max_instances=8)
    for n in (5, 6):
        rows[f"h{n}.Code"] = {**rows["h3.Code"], "instance": f"h{n}.Code", "host": f"h{n}"}
    # Chat: 5 calls per slot on 2 instances wants ceil(2 * 5 / 1.5) - 2 = 5 more; Code (4
    # instances, min 1) can spare 3
    snap = _decide(Rebalancer(), rows).snapshot
    assert len(snap.releases) == 3 and {r["instance"] for r in snap.releases} < set(rows)
    assert snap.provisions == [{"agent": "Chat", "node": "n2"}] * 3
    # a mild skew moves one; max_moves bounds a large one
    assert len(_decide(Rebalancer(), _pool(hot_queue=1, max_instances=8, startup_s=0.5) | {
        k: v for k, v in rows.items() if k.endswith("Code")}).snapshot.releases) == 1
    assert len(_decide(Rebalancer(max_moves=2), rows).snapshot.releases) == 2


def test_rebalancer_evens_out_a_near_saturated_pool_before_it_queues() -> None:
    def pool() -> dict[str, dict[str, Any]]:
        rows = _pool(hot_queue=0, max_instances=4, startup_s=1.0)
        for r in rows.values():
            r["concurrency"] = 8
        for name in ("h1.Chat", "h2.Chat"):  # 7 of 8 slots busy, nothing queued
            rows[name].update(inflight=7, queued_work_s=0.0)
        rows["h3.Code"]["inflight"] = 1
        return rows

    assert _decide(Rebalancer(), pool()).snapshot.provisions == []  # off by default
    policy = Rebalancer(balance=0.2)
    # Chat 0.875 per slot, Code 0.0625: one more Chat instance makes it 0.58 and Code 0.125,
    # once that has held for a start-up time
    assert _decide(policy, pool(), now=1000.0).snapshot.provisions == []
    snap = _decide(policy, pool(), now=1001.0).snapshot
    assert snap.provisions == [{"agent": "Chat", "node": "n2"}] and \
        snap.releases == [{"instance": "h4.Code", "node": "n2"}]
    # a gain under `balance` does nothing however long it lasts
    mild = Rebalancer(balance=0.4)
    assert not any(_decide(mild, pool(), now=t).snapshot.provisions for t in (1000.0, 1005.0))
