"""Built-in rebalancing: move agent instances toward the agent type that takes the load."""

from __future__ import annotations

import time
from typing import Any

from nalar_common.subjects import DRIVER_AGENT

from nalar_global_controller.primitives import ClusterState, Decisions, load_of


class Rebalancer:
    """When one agent type's calls queue (`hot`: more than `high` queued-or-running calls per
    slot) while another's instances idle (`cold`: under `low`), start one more instance of the
    hot type: on a host with a free slot (or a new host process, where a local controller may
    start one: `NALAR_LC_SPAWN_HOSTS`), else in place of an instance of the cold type (that
    instance is released and its host starts the hot type). Within each agent's
    `min_instances` / `max_instances`; only when the hot type's backlog outlasts the new
    instance's start-up time (the engine loading), and then not again for `cooldown_s` plus
    that start-up time, so the change is paid for before the next one."""

    def __init__(self, high: float = 1.5, low: float = 0.5, cooldown_s: float = 2.0) -> None:
        if not 0 <= low < high or cooldown_s < 0:
            raise ValueError("need 0 <= low < high and cooldown_s >= 0")
        self.high, self.low, self.cooldown_s = high, low, cooldown_s
        self._quiet_until = 0.0

    def decide(self, state: ClusterState, out: Decisions) -> None:
        now = state.now or time.time()
        if now < self._quiet_until:
            return
        agents = {a: rows for a, rows in state.by_agent().items() if a != DRIVER_AGENT}
        if len(agents) < 2:
            return
        util = {a: sum(load_of(r) * int(r.get("concurrency", 1)) for r in rows.values())
                / max(1, sum(int(r.get("concurrency", 1)) for r in rows.values()))
                for a, rows in agents.items()}
        hot = max(agents, key=lambda a: (util[a], a))
        rows = agents[hot]
        first = next(iter(rows.values()))
        startup = float(first.get("startup_s", 0.0))
        if util[hot] <= self.high or not self._below_max(rows) or \
                self._backlog_s(rows) <= startup:
            return
        host = self._free_host(state, hot)
        if host is not None:
            out.provision(hot, host)
        else:
            victim = self._victim(agents, util, hot)
            if victim is None:
                return
            out.release(victim)
            out.provision(hot, str(state.instances[victim]["node"]))
        self._quiet_until = now + startup + self.cooldown_s

    @staticmethod
    def _below_max(rows: dict[str, dict[str, Any]]) -> bool:
        most = next(iter(rows.values())).get("max_instances")
        return most is None or len(rows) < int(most)

    @staticmethod
    def _backlog_s(rows: dict[str, dict[str, Any]]) -> float:
        """How long the queued work takes to drain at the current instance count."""
        work = sum(float(r.get("queued_work_s") or 0.0) for r in rows.values())
        return work / max(1, len(rows))

    @staticmethod
    def _free_host(state: ClusterState, agent: str) -> str | None:
        """A node with a host that may start one more instance and has none of `agent`, or
        whose local controller may start one more host process."""
        with_agent = {r["host"] for r in state.instances.values()
                      if r["agent"] == agent and not r.get("draining")}
        for row in sorted(state.instances.values(), key=lambda r: r["host"]):
            free = row.get("slots_free")
            if free is not None and free > 0 and row["host"] not in with_agent:
                return str(row["node"])
        for node, tel in sorted(state.telemetry.items()):
            if int(tel.get("spawn_capacity") or 0) > 0:  # its controller starts a host
                return node
        return None

    def _victim(self, agents: dict[str, dict[str, dict[str, Any]]], util: dict[str, float],
                hot: str) -> str | None:
        """The least-loaded instance of the coldest agent type that can spare one, on a host
        without the hot type."""
        hot_hosts = {r["host"] for r in agents[hot].values()}
        for cold in sorted((a for a in agents if a != hot and util[a] < self.low),
                           key=lambda a: (util[a], a)):
            rows = agents[cold]
            least = int(next(iter(rows.values())).get("min_instances", 1))
            if len(rows) <= max(1, least):
                continue
            spare = [i for i, r in rows.items() if r["host"] not in hot_hosts]
            if spare:
                return min(spare, key=lambda i: (load_of(rows[i]), i))
        return None
