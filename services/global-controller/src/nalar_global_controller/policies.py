"""Policies: small classes that read the cluster view and emit routing decisions.

A policy implements `decide(view, out)`; `out` collects the primitives (`route`,
`route_session`, `set_priority`) that become the next snapshot. Users point
`NALAR_GC_POLICIES` at `module:Class`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from nalar_common.cluster import PolicySnapshot


@dataclass
class ClusterState:
    """What the controller knows: the latest telemetry per node and the live instances."""

    telemetry: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> info+telemetry


class Decisions:
    """The primitives a policy can emit (DESIGN §4)."""

    def __init__(self) -> None:
        self.snapshot = PolicySnapshot()

    def route(self, agent: str, instances: list[str], weights: list[float],
              nodes_of: dict[str, str]) -> None:
        self.snapshot.instance_weights[agent] = dict(zip(instances, weights, strict=True))
        per_node: dict[str, float] = {}
        for inst, w in zip(instances, weights, strict=True):
            per_node[nodes_of[inst]] = per_node.get(nodes_of[inst], 0.0) + w
        self.snapshot.routes[agent] = per_node

    def route_session(self, session: str, agent: str, instance: str) -> None:
        self.snapshot.sessions.setdefault(session, {})[agent] = instance

    def set_priority(self, session: str, value: int) -> None:
        self.snapshot.priorities[session] = value


class Policy(Protocol):
    def decide(self, state: ClusterState, out: Decisions) -> None: ...


class LeastLoadedRouting:
    """Weight each instance by its free capacity: concurrency minus queued and in-flight work."""

    def decide(self, state: ClusterState, out: Decisions) -> None:
        by_agent: dict[str, list[tuple[str, float]]] = {}
        nodes_of: dict[str, str] = {}
        for iid, inst in state.instances.items():
            capacity = float(inst.get("concurrency", 1))
            busy = float(inst.get("queue", 0)) + float(inst.get("inflight", 0))
            free = max(0.0, capacity - busy)
            # never zero: an overloaded node still gets a trickle
            weight = round(free / capacity + 0.05, 3)
            by_agent.setdefault(inst["agent"], []).append((iid, weight))
            nodes_of[iid] = inst["node"]
        for agent, rows in sorted(by_agent.items()):
            rows.sort()
            out.route(agent, [r[0] for r in rows], [r[1] for r in rows], nodes_of)


def load_policies(spec: str) -> list[Policy]:
    out: list[Policy] = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        module, _, name = item.partition(":")
        if not name:
            raise ValueError(f"policy {item!r} must be written module:Class")
        out.append(getattr(importlib.import_module(module), name)())
    return out
