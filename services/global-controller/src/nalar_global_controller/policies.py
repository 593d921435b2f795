"""Policies: small classes that read the cluster state and emit decisions (DESIGN §4).

A policy implements `decide(state, out)`; `out` collects the primitives (`route`,
`route_session`, `prefer`, `set_priority`, `migrate`, `provision`, `release`) that become the
next snapshot. Users point `NALAR_GC_POLICIES` (or `PUT /v1/policy`) at `module:Class`, or at
`{"class": "module:Class", "params": {...}}` to configure one.
"""

from __future__ import annotations

from typing import Any

from nalar_common.policyspec import describe, load_policy, parse_specs

from nalar_global_controller.migration import HeadOfLineMigration
from nalar_global_controller.primitives import ClusterState, Decisions, Policy, load_of
from nalar_global_controller.priority import SessionPriority
from nalar_global_controller.rebalance import Rebalancer
from nalar_global_controller.routing import LeastLoadedRouting, SessionAffinity

_HERE = "nalar_global_controller.policies"
DEFAULT_POLICIES = [f"{_HERE}:LeastLoadedRouting", f"{_HERE}:SessionAffinity",
                    f"{_HERE}:HeadOfLineMigration", f"{_HERE}:SessionPriority"]


def load_policies(spec: str | list[Any]) -> list[Policy]:
    return [load_policy(item) for item in parse_specs(spec)]


__all__ = ["DEFAULT_POLICIES", "ClusterState", "Decisions", "HeadOfLineMigration",
           "LeastLoadedRouting", "Policy", "Rebalancer", "SessionAffinity", "SessionPriority",
           "describe", "load_of", "load_policies", "load_policy", "parse_specs"]
