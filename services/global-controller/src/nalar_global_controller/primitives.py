"""What a policy sees (`ClusterState`) and what it can say (`Decisions`, DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from nalar_common.cluster import PolicySnapshot


@dataclass
class ClusterState:
    """The latest telemetry per node and one row per live instance: its `agent`, `node`,
    `host`, `concurrency`, `draining`, `stateful`, `min_instances`, `max_instances`,
    `startup_s`, `slots_free`, and from telemetry `queue`, `inflight`, `queued_tokens`,
    `queued_work_s`, `service_s`, `p50_s`, `p99_s`, `oldest_age_s`, `oldest_session`,
    `queued_sessions` (ids, first in line first), `waiting` (per queued session: `session`,
    `calls`, `wait_s`, `priority`, `context_tokens`, `running_here`), `recent_sessions`
    ([session, last served at] pairs: whose KV cache it holds) and `engine` (its load)."""

    telemetry: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> info+telemetry
    now: float = 0.0

    def by_agent(self, *, serving: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
        """Instances per agent; with `serving`, only those taking new calls."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for iid, row in self.instances.items():
            if serving and row.get("draining"):
                continue
            out.setdefault(row["agent"], {})[iid] = row
        return out


def load_of(row: dict[str, Any]) -> float:
    """Queued and running calls per slot."""
    return (float(row.get("queue", 0)) + float(row.get("inflight", 0))) / \
        max(1.0, float(row.get("concurrency", 1)))


class Decisions:
    """The primitives a policy emits; together they become the next snapshot."""

    def __init__(self, state: ClusterState | None = None) -> None:
        self.snapshot = PolicySnapshot()
        self._state = state

    def route(self, agent: str, instances: list[str], weights: list[float],
              nodes_of: dict[str, str] | None = None) -> None:
        """Split new calls of `agent` between `instances` by `weights` (others get none)."""
        if nodes_of is None:
            rows = self._state.instances if self._state is not None else {}
            nodes_of = {i: rows[i]["node"] for i in instances if i in rows}
        self.snapshot.instance_weights[agent] = dict(zip(instances, weights, strict=True))
        per_node: dict[str, float] = {}
        for inst, w in zip(instances, weights, strict=True):
            if inst in nodes_of:
                per_node[nodes_of[inst]] = per_node.get(nodes_of[inst], 0.0) + w
        self.snapshot.routes[agent] = per_node

    def route_session(self, session: str, agent: str, instance: str) -> None:
        """Send the session's calls of `agent` to `instance`; its queued ones move at once."""
        self.snapshot.sessions.setdefault(session, {})[agent] = instance

    def prefer(self, session: str, agent: str, instance: str) -> None:
        """Affinity: the instance holding the session's state and KV cache, used until its
        queue is too long (then local controllers spill over to the least-loaded one)."""
        self.snapshot.affinity.setdefault(session, {})[agent] = instance

    def set_priority(self, session: str, value: int, agent: str | None = None) -> None:
        """Every call of the session (of `agent` only, if given) queues at this priority."""
        if agent is None:
            self.snapshot.priorities[session] = value
        else:
            self.snapshot.agent_priorities.setdefault(session, {})[agent] = value

    def migrate(self, session: str, src: str, dst: str) -> None:
        """Move the session's queued calls on instance `src` and its state lease to `dst`
        (calls already running finish on `src`); later calls follow it to `dst`."""
        agent = self._agent_of(src) or self._agent_of(dst)
        self.snapshot.migrations.append({"session": session, "agent": agent, "src": src,
                                         "dst": dst})
        self.route_session(session, agent, dst)

    def provision(self, agent: str, node: str) -> None:
        """Start one more instance of `agent` on `node` (a host there with a free slot)."""
        self.snapshot.provisions.append({"agent": agent, "node": node})

    def release(self, instance: str) -> None:
        """Stop `instance`: it finishes what it runs and takes nothing new."""
        self.snapshot.releases.append({"instance": instance,
                                       "node": self._node_of(instance)})

    def _agent_of(self, instance: str) -> str:
        row = self._state.instances.get(instance) if self._state is not None else None
        return str(row["agent"]) if row else instance.rsplit(".", 1)[-1]

    def _node_of(self, instance: str) -> str:
        row = self._state.instances.get(instance) if self._state is not None else None
        return str(row["node"]) if row else ""


class Policy(Protocol):
    def decide(self, state: ClusterState, out: Decisions) -> None: ...
