"""Built-in rebalancing: move agent instances toward the agent type that takes the load."""

from __future__ import annotations

import math
import time
from typing import Any

from nalar_common.subjects import DRIVER_AGENT

from nalar_global_controller.primitives import ClusterState, Decisions, load_of


class Rebalancer:
    """Moves agent instances toward the agent type that takes the load, in two cases:

    - *queueing*: one type's calls queue (`hot`: more than `high` queued-or-running calls per
      slot) and its backlog outlasts a new instance's start-up time (the engine loading): as
      many instances at once as bring its load per slot down to `high` (at most `max_moves`;
      a skew that builds fast is met in one start-up, not one start-up per instance);
    - *balance*: one type runs busier than another by so much that moving one instance
      lowers the busiest load per slot by at least `balance` (0: never), and that has held
      for a whole start-up time: one instance. A near-saturated pool is where engines run
      out of KV cache and tails grow, before anything queues.

    The new instance goes on a host with a free slot (or a new host process, where a local
    controller may start one: `NALAR_LC_SPAWN_HOSTS`), else in place of an instance of a cold
    type (under `low`, above its `min_instances`: that instance is released and its host
    starts the hot type); never above the hot type's `max_instances`. Then nothing again for
    the start-up time plus `cooldown_s`, so a change is paid for before the next one."""

    def __init__(self, high: float = 1.5, low: float = 0.5, cooldown_s: float = 2.0,
                 max_moves: int = 4, balance: float = 0.0) -> None:
        if not 0 <= low < high or cooldown_s < 0 or max_moves < 1 or balance < 0:
            raise ValueError("need 0 <= low < high, cooldown_s >= 0, max_moves >= 1 and "
                             "balance >= 0")
        self.high, self.low, self.cooldown_s = high, low, cooldown_s
        self.max_moves, self.balance = max_moves, balance
        self._quiet_until = 0.0
        self._uneven_since: tuple[str, float] | None = None  # (hot type, since when)

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
        most = first.get("max_instances")
        room = self.max_moves if most is None else min(self.max_moves, int(most) - len(rows))
        if room <= 0:
            return
        if util[hot] > self.high and self._backlog_s(rows) > startup:
            wanted = min(room, math.ceil(len(rows) * util[hot] / self.high) - len(rows))
        elif self._uneven(agents, util, hot, now, startup):
            wanted = 1
        else:
            return
        moved = 0
        host = self._free_host(state, hot)
        if host is not None:  # one per tick: the node's controller picks the host
            out.provision(hot, host)
            moved += 1
        released: set[str] = set()
        while moved < wanted:
            victim = self._victim(agents, util, hot, released)
            if victim is None:
                break
            released.add(victim)
            out.release(victim)
            out.provision(hot, str(state.instances[victim]["node"]))
            moved += 1
        if moved:
            self._quiet_until = now + startup + self.cooldown_s
            self._uneven_since = None

    def _uneven(self, agents: dict[str, dict[str, dict[str, Any]]], util: dict[str, float],
                hot: str, now: float, startup: float) -> bool:
        """Whether moving one instance from the coldest type that can spare one to `hot`
        lowers the busiest load per slot by `balance`, and has for a start-up time."""
        victim = self._victim(agents, util, hot, set()) if self.balance else None
        cold = next((a for a, rows in agents.items() if victim in rows), None)
        if victim is None or cold is None:
            self._uneven_since = None
            return False
        n_hot, n_cold = len(agents[hot]), len(agents[cold])
        after = max(util[hot] * n_hot / (n_hot + 1), util[cold] * n_cold / (n_cold - 1))
        if util[hot] - after < self.balance:
            self._uneven_since = None
            return False
        if self._uneven_since is None or self._uneven_since[0] != hot:
            self._uneven_since = (hot, now)
        return now - self._uneven_since[1] >= startup

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
                hot: str, released: set[str]) -> str | None:
        """The least-loaded instance of the coldest agent type that can spare one (counting
        those already `released` this tick), on a host without the hot type."""
        hot_hosts = {r["host"] for r in agents[hot].values()}
        for cold in sorted((a for a in agents if a != hot and util[a] < self.low),
                           key=lambda a: (util[a], a)):
            rows = {i: r for i, r in agents[cold].items() if i not in released}
            least = int(next(iter(agents[cold].values())).get("min_instances", 1))
            if len(rows) <= max(1, least):
                continue
            spare = [i for i, r in rows.items() if r["host"] not in hot_hosts]
            if spare:
                return min(spare, key=lambda i: (load_of(rows[i]), i))
        return None
