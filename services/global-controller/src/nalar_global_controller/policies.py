"""Policies: small classes that read the cluster state and emit decisions (DESIGN §4).

A policy implements `decide(state, out)`; `out` collects the primitives (`route`,
`route_session`, `prefer`, `set_priority`, `migrate`, `provision`, `release`) that become the
next snapshot. Users point `NALAR_GC_POLICIES` (or `PUT /v1/policy`) at `module:Class`, or at
`{"class": "module:Class", "params": {...}}` to configure one; a class that is not built in
must be allowed first (`NALAR_POLICIES_ALLOW` or the `nalar.policies` entry point group).
"""

from __future__ import annotations

from typing import Any

from nalar_common.policyspec import (
    BUILTIN_POLICIES,
    PolicyAllowList,
    PolicyNotAllowed,
    PolicySpecError,
    describe,
    load_policy,
    parse_specs,
)

from nalar_global_controller.migration import HeadOfLineMigration
from nalar_global_controller.primitives import ClusterState, Decisions, Policy, load_of
from nalar_global_controller.priority import SessionPriority
from nalar_global_controller.rebalance import Rebalancer
from nalar_global_controller.routing import LeastLoadedRouting, SessionAffinity

_HERE = "nalar_global_controller.policies"
DEFAULT_POLICIES = [f"{_HERE}:LeastLoadedRouting", f"{_HERE}:SessionAffinity",
                    f"{_HERE}:HeadOfLineMigration", f"{_HERE}:SessionPriority"]


def load_policies(spec: str | list[Any], allowed: PolicyAllowList | None = None) -> list[Policy]:
    """Every policy of `spec`, each checked against `allowed` (default: the built-ins) before
    it is imported; PolicySpecError (a ValueError) on the first that cannot be used."""
    try:
        specs = parse_specs(spec)
    except ValueError as exc:
        raise PolicySpecError(f"policies must be module:Class, comma separated, or a JSON "
                              f"list: {exc}") from exc
    return [load_policy(item, allowed) for item in specs]


__all__ = ["BUILTIN_POLICIES", "DEFAULT_POLICIES", "ClusterState", "Decisions",
           "HeadOfLineMigration", "LeastLoadedRouting", "Policy", "PolicyAllowList",
           "PolicyNotAllowed", "PolicySpecError", "Rebalancer", "SessionAffinity",
           "SessionPriority", "describe", "load_of", "load_policies", "load_policy",
           "parse_specs"]
