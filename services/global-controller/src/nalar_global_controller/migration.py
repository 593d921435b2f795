"""Built-in head-of-line migration: a session stuck behind long jobs moves to an idle
instance when the move costs less than the wait."""

from __future__ import annotations

from typing import Any

from nalar_global_controller.primitives import ClusterState, Decisions, load_of


class HeadOfLineMigration:
    """For each session waiting in an instance's queue (not behind a call of its own), move it
    to an idle instance of the same agent when its expected wait exceeds `margin` times the
    cost of moving plus `min_gain_s`. The cost is what the session loses there: its KV
    context recomputed at the destination engine's prefill rate (nothing if that instance
    still holds its cache), plus `overhead_s` for the move itself. Stateful agents' sessions
    never move. At most `max_per_tick` moves per round, one per free slot of a destination."""

    def __init__(self, margin: float = 1.5, min_gain_s: float = 0.05, overhead_s: float = 0.005,
                 prefill_tokens_per_s: float = 8000.0, max_per_tick: int = 16) -> None:
        if min(margin, min_gain_s, overhead_s) < 0 or prefill_tokens_per_s <= 0:
            raise ValueError("margin, min_gain_s, overhead_s must be >= 0 and "
                             "prefill_tokens_per_s > 0")
        self.margin, self.min_gain_s, self.overhead_s = margin, min_gain_s, overhead_s
        self.prefill = prefill_tokens_per_s
        self.max_per_tick = max_per_tick

    def move_cost_s(self, context_tokens: float, dst: dict[str, Any], cached: bool) -> float:
        if cached:
            return self.overhead_s
        rate = float((dst.get("engine") or {}).get("prefill_tokens_per_s") or self.prefill)
        return self.overhead_s + context_tokens / rate

    def decide(self, state: ClusterState, out: Decisions) -> None:
        """Loads do not change within a round (only the free slots this round's moves take),
        so each agent's instances are sorted once; an agent with no free slot anywhere is
        skipped (in a saturated cluster, most are)."""
        moves = 0
        for rows in state.by_agent().values():
            free = {i: int(r.get("concurrency", 1)) - int(r.get("inflight", 0))
                    - int(r.get("queue", 0)) for i, r in rows.items() if not r.get("stateful")}
            if not any(f >= 1 for f in free.values()):
                continue
            order = sorted(free, key=lambda i: (load_of(rows[i]), i))
            recent: dict[str, set[str]] = {}
            stuck = sorted(((w, src) for src, r in rows.items() if not r.get("stateful")
                            for w in r.get("waiting", ()) if not w.get("running_here")),
                           key=lambda x: -float(x[0].get("wait_s", 0)))
            for w, src in stuck:
                if moves >= self.max_per_tick:
                    return
                if not any(free[d] >= 1 for d in order):
                    break
                dst = self._best(rows, free, order, recent, src, w)
                if dst is None:
                    continue
                out.migrate(w["session"], src, dst)
                free[dst] -= int(w.get("calls", 1))
                moves += 1

    def _best(self, rows: dict[str, dict[str, Any]], free: dict[str, int], order: list[str],
              recent: dict[str, set[str]], src: str, w: dict[str, Any]) -> str | None:
        """The cheapest destination with a free slot where the move beats the wait."""
        wait = float(w.get("wait_s", 0))
        best, best_cost = None, 0.0
        for dst in order:
            if dst == src or free[dst] < 1:
                continue
            held = recent.get(dst)
            if held is None:
                held = recent[dst] = {s for s, _ in rows[dst].get("recent_sessions", ())}
            cost = self.move_cost_s(float(w.get("context_tokens", 0)), rows[dst],
                                    w["session"] in held)
            if wait > self.margin * cost + self.min_gain_s and (best is None or cost < best_cost):
                best, best_cost = dst, cost
        return best
