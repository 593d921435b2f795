"""Where a call runs, decided here without asking anyone: pure functions of the instance
queues of this node and the policy's last snapshot (no I/O; unit-tested on their own)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from nalar_common.cluster import PolicySnapshot

from nalar_local_controller.held import Held
from nalar_local_controller.queues import InstanceQueue

DEFAULT_PREFILL_RATE = 8000.0  # tokens/s, when an engine reports none


@dataclass(frozen=True)
class Rules:
    """How this controller places: `dynamic`, `sticky` or `creation` (the settings' word),
    and the queue length per slot past which a session leaves its KV cache's instance."""

    placement: str = "dynamic"
    spill_queue: float = 2.0


def prefill_rate(q: InstanceQueue) -> float:
    """Prompt tokens per wall second of the instance's engine (what recomputing a moved
    session's KV context costs there)."""
    rate = (q.info.engine or {}).get("prefill_tokens_per_s")
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else DEFAULT_PREFILL_RATE


def priority(held: Held, snap: PolicySnapshot | None) -> int:
    """The call's priority: what its caller asked, raised by the policy's boost of its
    session."""
    boost = snap.priority(held.session, held.agent) if snap is not None and held.session \
        else None
    return max(held.base_priority, int(boost)) if boost is not None else held.base_priority


def choose(held: Held, queues: Iterable[InstanceQueue], snap: PolicySnapshot | None,
           rules: Rules, now: float) -> InstanceQueue | None:
    """The instance for a call: the stateful pin; the session's route from the policy; else
    among the instances the policy allows, the one where the call is expected to finish
    first: its expected wait there, plus recomputing the session's KV context where it is
    not cached (a queue longer than `spill_queue` per slot gives up the cache). The
    baselines' placements (`sticky`, `creation`) stop after the pin."""
    candidates = [q for q in queues if q.info.agent == held.agent and not q.info.draining]
    if not candidates:
        return None
    if held.pinned:
        for q in candidates:
            if q.info.instance == held.pinned:
                return q
    if rules.placement == "sticky":
        ordered = sorted(candidates, key=lambda q: q.info.instance)
        digest = hashlib.blake2b((held.session or held.run).encode(), digest_size=8)
        return ordered[int.from_bytes(digest.digest(), "big") % len(ordered)]
    if rules.placement == "creation":
        return min(candidates, key=lambda q: (q.load(), q.dispatched))
    allowed = candidates
    if snap is not None:
        if held.session:
            routed = snap.sessions.get(held.session, {}).get(held.agent)
            for q in candidates:
                if q.info.instance == routed:
                    return q
        weights = snap.instance_weights.get(held.agent)
        if weights:
            allowed = [q for q in candidates if weights.get(q.info.instance, 1.0) > 0] \
                or candidates
    home_q = home(held, allowed, snap) if held.session else None
    if home_q is not None and \
            home_q.queued > rules.spill_queue * max(1, home_q.info.concurrency):
        home_q = None  # spill over: too long a queue to wait for the cache
    context = max((q.context.get(held.session, 0) for q in allowed), default=0) \
        if held.session else 0
    if home_q is not None and not context:
        return home_q  # the policy's word for a session not seen here: its size unknown

    def cost(q: InstanceQueue) -> tuple[float, float, int]:
        """Expected wait there, plus recomputing the session's KV context where it is not
        cached (a long call running ahead counts long: heavy-tailed run times)."""
        wait = 0.0 if q.free_slots > q.queued else q.work_s(now)
        recompute = 0.0 if q is home_q or not context else context / prefill_rate(q)
        return wait + recompute, q.load(), q.dispatched

    return min(allowed, key=cost)


def home(held: Held, allowed: list[InstanceQueue],
         snap: PolicySnapshot | None) -> InstanceQueue | None:
    """The instance holding the session's KV cache: the one here that served it last, else
    the one the policy names (it served it on another node's word)."""
    best = max(allowed, key=lambda q: q.holds(held.session))
    if best.holds(held.session):
        return best
    preferred = snap.affinity.get(held.session, {}).get(held.agent) if snap else None
    return next((q for q in allowed if q.info.instance == preferred), None)


def steal(idle: InstanceQueue, queues: Iterable[InstanceQueue], snap: PolicySnapshot | None,
          rules: Rules) -> list[Held]:
    """An instance has free slots and nothing queued while another instance of its agent here
    has a queue: the calls to take from the longest one (those not tied to it: a stateful
    pin, a policy route, or a session whose KV cache is there while its queue is short),
    already taken out of that queue. Empty when nothing should move."""
    if idle.info.stateful or idle.info.draining or rules.placement != "dynamic":
        return []
    donors = [q for q in queues if q is not idle and q.queued
              and q.info.agent == idle.info.agent and not q.info.stateful
              and q.free_slots <= 0]
    if not donors:
        return []
    donor = max(donors, key=lambda q: q.queued)
    spill = donor.queued > rules.spill_queue * max(1, donor.info.concurrency)
    budget = idle.free_slots

    def tied(h: Held) -> bool:
        nonlocal budget
        if budget <= 0 or h.pinned or (snap is not None and h.session and snap.sessions.get(
                h.session, {}).get(h.agent) == donor.info.instance) or \
                (h.session and donor.holds(h.session) and not spill):
            return True
        budget -= 1
        return False

    return donor.take(tied)
