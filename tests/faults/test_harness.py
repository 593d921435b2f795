"""The fault report's judgement of an effect applied twice (runs in `make test`): the ledger's
crash window is told apart from a duplicate by the idempotency key and the kill."""

from __future__ import annotations

from faults.harness import Effects, Fault, crash_window


def effects(ops: list[str], log: list[str], effect: int = 2) -> Effects:
    return Effects("r", 1, effect, len(log), log, ops)


KILL = Fault("agent-host", "SIGKILL agent host n1a", 100.0, "host-n1a")


def test_a_host_killed_between_effect_and_record_is_the_crash_window() -> None:
    e = effects(["k@a1", "k@a2"], ["99.5|a1|n1a", "101.0|a2|n1b"])
    assert crash_window(e, [KILL])


def test_anything_else_applied_twice_is_a_duplicate() -> None:
    both = ["99.5|a1|n1a", "101.0|a2|n1b"]
    assert not crash_window(effects(["k@a1", "j@a2"], both), [KILL])  # another key
    assert not crash_window(effects(["k@a1", "k@a2"], both), [])  # no kill
    assert not crash_window(effects(["k@a1", "k@a2"], ["99.5|a1|n1b", "101.0|a2|n1a"]),
                            [KILL])  # the killed host ran the second one
    assert not crash_window(effects(["k@a1", "k@a2"], ["101.5|a1|n1a", "102.0|a2|n1b"]),
                            [KILL])  # both after the kill
    assert not crash_window(effects(["k@a1", "k@a2", "k@a3"],
                                    [*both, "103|a3|n1b"], effect=3), [KILL])
