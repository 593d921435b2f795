"""Names: one place for subjects, streams, buckets and keys, with an optional prefix."""

from __future__ import annotations

import pytest
from nalar_common.auth import check_name
from nalar_common.subjects import Names, check_id, key_part


def test_default_names_match_the_design() -> None:
    n = Names()
    assert n.call("n1", "Writer") == "nalar.call.n1.Writer"
    assert n.future("r1", "3_1") == "nalar.fut.r1.3_1"
    assert n.run_event("r1", "created") == "nalar.run.r1.created"
    assert n.telemetry("n1") == "nalar.tel.n1"
    assert (n.calls_stream, n.futures_stream, n.runs_stream) == (
        "NALAR_CALLS", "NALAR_FUTURES", "NALAR_RUNS")
    assert (n.policy_bucket, n.instances_bucket) == ("nalar_policy", "nalar_instances")
    assert n.session_key("s1", "lease") == "nalar:{s1}:lease"


def test_prefix_isolates_everything() -> None:
    n = Names("t1")
    assert n.call("n1", "A") == "t1.nalar.call.n1.A"
    assert n.calls_for_node("n1") == "t1.nalar.call.n1.>"
    assert n.futures_stream == "T1_NALAR_FUTURES"
    assert n.policy_bucket == "t1_nalar_policy"
    assert n.session_key("s", "state") == "t1:nalar:{s}:state"


@pytest.mark.parametrize("bad", ["a.b", "a b", "a*", ">", ""])
def test_bad_prefix_rejected(bad: str) -> None:
    if bad == "":
        assert Names(bad).root == "nalar"
        return
    with pytest.raises(ValueError):
        Names(bad)


@pytest.mark.parametrize("bad", ["victim\n", "a\nb", "", "a.b", "a b", "x" * 129, "a/b"])
def test_ids_have_one_charset_and_no_trailing_newline(bad: str) -> None:
    # `$` would let "victim\n" through; NATS headers strip it, so it became another
    # tenant's session in the controllers
    with pytest.raises(ValueError):
        check_id(bad, "session id")
    assert check_id("run-1_A", "run id") == "run-1_A"
    assert check_name("tenant", "acme:x") and key_part("acme:x/y") == "acme%3Ax%2Fy"
    with pytest.raises(ValueError):
        check_name("tenant", "acme\n")
