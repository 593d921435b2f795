"""Which calls of a replay are answered from the original's journal: all of a replay's, a
fork's up to its fork point (in a driver's order: `3_1` before `4`)."""

from __future__ import annotations

from nalar_local_controller.runs import RunFacts


def facts(replay_of: str = "", fork_at: str = "") -> RunFacts:
    return RunFacts("r", None, "wf", "s", 0.0, replay_of=replay_of,  # type: ignore[arg-type]
                    fork_at=fork_at)


def test_a_plain_run_replays_nothing() -> None:
    assert not facts().replays("1")


def test_a_replay_replays_every_call() -> None:
    assert all(facts("orig").replays(f) for f in ("1", "3_2", "40", "sig-approve"))


def test_a_fork_replays_up_to_its_point_and_runs_live_after() -> None:
    fork = facts("orig", fork_at="4")
    assert [f for f in ("1", "3", "3_1", "4", "4_1", "5", "12", "sig-go")
            if fork.replays(f)] == ["1", "3", "3_1", "4", "sig-go"]
    nested = facts("orig", fork_at="3_2")
    assert nested.replays("3_1") and nested.replays("3_2") and not nested.replays("3_3")
    assert not nested.replays("4")
