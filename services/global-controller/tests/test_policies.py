"""Policies: the built-in least-loaded routing and a user policy loaded from `module:Class`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nalar_common.settings import PolicyClassSettings
from nalar_global_controller import policies as builtin
from nalar_global_controller.policies import (
    BUILTIN_POLICIES,
    ClusterState,
    Decisions,
    PolicyAllowList,
    PolicyNotAllowed,
    load_policies,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def _state() -> ClusterState:
    return ClusterState(instances={
        "n1-h1.A": {"agent": "A", "node": "n1", "concurrency": 1, "queue": 3, "inflight": 1,
                    "queued_sessions": ["other", "vip"]},
        "n2-h1.A": {"agent": "A", "node": "n2", "concurrency": 1, "queue": 0, "inflight": 0},
        "n2-h1.B": {"agent": "B", "node": "n2", "concurrency": 4, "queue": 0, "inflight": 1},
    })


def test_least_loaded_weights_follow_free_capacity() -> None:
    (policy,) = load_policies("nalar_global_controller.policies:LeastLoadedRouting")
    out = Decisions()
    policy.decide(_state(), out)
    w = out.snapshot.instance_weights["A"]
    assert w["n2-h1.A"] > w["n1-h1.A"] > 0
    assert out.snapshot.routes["A"]["n2"] > out.snapshot.routes["A"]["n1"]
    assert set(out.snapshot.routes["B"]) == {"n2"}


def test_the_guides_protect_session_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ≤ 20-line policy of docs/policies.md, loaded the way NALAR_GC_POLICIES loads it."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("NALAR_PROTECT_SESSION", "vip")
    sys.modules.pop("protect_session", None)
    spec = "nalar_global_controller.policies:LeastLoadedRouting,protect_session:ProtectSession"
    with pytest.raises(PolicyNotAllowed):  # a user policy is registered first
        load_policies(spec)
    allowed = PolicyAllowList.load(PolicyClassSettings(allow="protect_session:ProtectSession"))
    policies = load_policies(spec, allowed)
    out = Decisions()
    for p in policies:
        p.decide(_state(), out)
    assert out.snapshot.priorities == {"vip": 10}
    assert out.snapshot.sessions == {"vip": {"A": "n2-h1.A"}}  # moved to the idle instance
    source = (EXAMPLES / "protect_session.py").read_text().splitlines()
    code = [line for line in source if line.strip() and not line.lstrip().startswith(("#", '"""'))
            and not line.startswith(("import", "from")) and '"""' not in line]
    assert len(code) <= 20


def test_bad_policy_spec_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="module:Class"):
        load_policies("no_colon_here")
    with pytest.raises(PolicyNotAllowed, match="not allowed"):
        load_policies("no.such.module:Policy")
    allowed = PolicyAllowList.load(PolicyClassSettings(allow="no.such.module:Policy"))
    with pytest.raises(ValueError, match="cannot be imported"):
        load_policies("no.such.module:Policy", allowed)


def test_every_builtin_policy_is_on_the_allow_list() -> None:
    """The names the gateway checks without importing the global controller cover every
    policy class it ships, under each module path it is known by."""
    exported = [getattr(builtin, n) for n in builtin.__all__]
    policies = {c for c in exported
                if isinstance(c, type) and callable(getattr(c, "decide", None))
                and c is not builtin.Policy}
    assert {c.__name__ for c in policies} == {
        "LeastLoadedRouting", "SessionAffinity", "HeadOfLineMigration", "SessionPriority",
        "Rebalancer"}
    for cls in policies:
        assert f"nalar_global_controller.policies:{cls.__name__}" in BUILTIN_POLICIES
        assert f"{cls.__module__}:{cls.__qualname__}" in BUILTIN_POLICIES
    assert set(builtin.DEFAULT_POLICIES) <= set(BUILTIN_POLICIES)
    loaded = load_policies(list(BUILTIN_POLICIES))
    assert {type(p) for p in loaded} == policies
