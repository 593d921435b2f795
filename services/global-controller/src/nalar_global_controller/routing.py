"""Built-in routing policies: least-loaded weights, and session affinity with spill-over."""

from __future__ import annotations

from nalar_global_controller.primitives import ClusterState, Decisions, load_of


class LeastLoadedRouting:
    """Weight each serving instance by its free capacity (concurrency minus queued and running
    calls); an overloaded instance keeps a trickle so its load stays measured."""

    def decide(self, state: ClusterState, out: Decisions) -> None:
        for agent, rows in sorted(state.by_agent().items()):
            ids = sorted(rows)
            weights = [round(max(0.0, 1.0 - load_of(rows[i])) + 0.05, 3) for i in ids]
            out.route(agent, ids, weights, {i: rows[i]["node"] for i in ids})


class SessionAffinity:
    """Keep a session on the instance that last served it (its state and KV cache are there)
    until that instance's queue holds more than `spill_queue` calls per slot; then prefer the
    least-loaded instance of the agent instead. Tracks the `max_sessions` most recent ones."""

    def __init__(self, spill_queue: float = 2.0, max_sessions: int = 2000) -> None:
        if spill_queue < 0 or max_sessions < 0:
            raise ValueError("spill_queue and max_sessions must be >= 0")
        self.spill_queue = spill_queue
        self.max_sessions = max_sessions

    def decide(self, state: ClusterState, out: Decisions) -> None:
        serving = state.by_agent()
        least = {a: min(rows, key=lambda i: (load_of(rows[i]), i))
                 for a, rows in serving.items() if rows}  # where a spilled session goes
        last: dict[tuple[str, str], tuple[float, str]] = {}
        for iid, row in state.instances.items():
            if row.get("stateful") or row.get("draining"):
                continue  # stateful sessions are pinned by their controller; draining ones go
            for session, ts in row.get("recent_sessions", ()):
                key = (str(session), str(row["agent"]))
                if key not in last or ts > last[key][0]:
                    last[key] = (float(ts), iid)
        newest = sorted(last.items(), key=lambda kv: -kv[1][0])[:self.max_sessions]
        for (session, agent), (_, iid) in newest:
            home = serving.get(agent, {}).get(iid)
            if home is None or float(home.get("queue", 0)) > \
                    self.spill_queue * max(1.0, float(home.get("concurrency", 1))):
                iid = least.get(agent, iid)
            out.prefer(session, agent, iid)
