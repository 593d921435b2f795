"""Per-instance priority queues of a local controller."""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict, deque
from typing import Any

from nalar_common.cluster import InstanceInfo

from nalar_local_controller.held import CallState, Held


class InstanceQueue:
    """Queued and in-flight calls of one agent instance, highest priority first, then the
    earliest run deadline (with one run timeout: the oldest run's calls first; `edf=False`:
    arrival order), then arrival;
    and what it learnt from finished calls: service time and tokens per call, and the
    sessions it served last (their KV context is cached in its engine)."""

    RECENT = 256

    def __init__(self, info: InstanceInfo, *, edf: bool = True) -> None:
        self.info = info
        self.edf = edf  # within a priority: earliest run deadline first; else arrival order
        self._heap: list[tuple[int, tuple[float, int], Held]] = []
        self.inflight: dict[str, Held] = {}
        self.latencies: deque[float] = deque(maxlen=512)
        self.dispatched = 0  # breaks ties between equally loaded instances (round robin)
        self.service_s = 0.0  # moving average of a call's run time here
        self.tokens_per_call = 0.0  # moving average of LLM tokens per call
        self.recent: OrderedDict[str, float] = OrderedDict()  # session -> last served at
        self.context: dict[str, int] = {}  # session -> KV context tokens it left here

    def finished(self, held: Held, seconds: float, tokens: int | None,
                 context: int | None) -> None:
        """Learn from a call that ran here."""
        self.latencies.append(seconds)
        self.service_s = seconds if not self.service_s else 0.8 * self.service_s + 0.2 * seconds
        if tokens is not None:
            self.tokens_per_call = tokens if not self.tokens_per_call else \
                0.8 * self.tokens_per_call + 0.2 * tokens
        if held.session:
            self.recent[held.session] = time.time()
            self.recent.move_to_end(held.session)
            if context is not None:
                self.context[held.session] = context
            while len(self.recent) > self.RECENT:
                old, _ = self.recent.popitem(last=False)
                self.context.pop(old, None)

    def holds(self, session: str) -> float:
        """When this instance last served the session (0: not recently)."""
        return self.recent.get(session, 0.0)

    @property
    def queued(self) -> int:
        return len(self._heap)

    @property
    def free_slots(self) -> int:
        return self.info.concurrency - len(self.inflight)

    def load(self) -> float:
        return (len(self._heap) + len(self.inflight)) / max(1, self.info.concurrency)

    def push(self, held: Held) -> None:
        held.instance, held.state = self.info.instance, CallState.QUEUED
        due = held.deadline if self.edf and held.deadline is not None else math.inf
        heapq.heappush(self._heap, (-held.priority, (due, held.seq), held))

    def pop(self) -> Held | None:
        """The next call to run; on a stateful agent, never a second one of a session that
        has a call running here (its calls run one at a time, in order)."""
        if not self.info.stateful:
            return heapq.heappop(self._heap)[2] if self._heap else None
        busy = {h.session for h in self.inflight.values()}
        skipped = []
        found = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            if entry[2].session in busy:
                skipped.append(entry)
                continue
            found = entry[2]
            break
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        return found

    def take(self, keep: Any) -> list[Held]:
        """Take the queued calls for which `keep` is false out of the queue (in order; `keep`
        is asked once per call, first in line first)."""
        kept: list[tuple[int, tuple[float, int], Held]] = []
        taken: list[Held] = []
        for entry in sorted(self._heap):
            if keep(entry[2]):
                kept.append(entry)
            else:
                taken.append(entry[2])
        if taken:
            self._heap = kept  # a sorted list is a heap
        return taken

    def reprioritize(self, priority_of: Any) -> bool:
        """Apply new priorities to queued calls; True when the order may have changed."""
        changed = False
        for i, (_, seq, held) in enumerate(self._heap):
            p = priority_of(held)
            if p != held.priority:
                held.priority = p
                self._heap[i] = (-p, seq, held)
                changed = True
        if changed:
            heapq.heapify(self._heap)
        return changed

    def _remaining_s(self, now: float) -> float:
        """Expected time left of the running calls: the mean run time minus what they ran,
        but at least half of what they ran (with heavy-tailed run times, a call that already
        ran long is likely a long one)."""
        return sum(max(self.service_s - (now - h.dispatched_at), 0.5 * (now - h.dispatched_at))
                   for h in self.inflight.values())

    def work_s(self, now: float) -> float:
        """Time to clear the queue at this instance's concurrency."""
        return (self._remaining_s(now) + len(self._heap) * self.service_s) / \
            max(1, self.info.concurrency)

    def queued_tokens(self) -> int:
        return int(len(self._heap) * self.tokens_per_call)

    def waiting(self, now: float, limit: int = 32) -> list[dict[str, Any]]:
        """Per queued session (first in line first): its calls here, how long until its first
        one starts, the priority its calls asked for, its KV context here, and whether a call
        of its own runs here (then it waits for itself, not behind others)."""
        slots = max(1, self.info.concurrency)
        running = {h.session for h in self.inflight.values()}
        blocked = self._remaining_s(now) if self.free_slots <= 0 else 0.0
        out: dict[str, dict[str, Any]] = {}
        for ahead, (_, _, h) in enumerate(sorted(self._heap)):
            if not h.session:
                continue
            row = out.get(h.session)
            if row is None:
                if len(out) >= limit:
                    continue
                wait = 0.0 if ahead < self.free_slots else \
                    (blocked + (ahead - max(0, self.free_slots)) * self.service_s) / slots
                row = out[h.session] = {
                    "session": h.session, "calls": 0, "wait_s": round(wait, 4),
                    "priority": h.base_priority, "age_s": round(now - h.arrived, 4),
                    "context_tokens": self.context.get(h.session, 0),
                    "running_here": h.session in running}
            row["calls"] += 1
            row["priority"] = max(row["priority"], h.base_priority)
        return list(out.values())

    def queued_sessions(self, limit: int = 32) -> list[str]:
        out: list[str] = []
        for _, _, h in sorted(self._heap):
            if h.session and h.session not in out:
                out.append(h.session)
                if len(out) >= limit:
                    break
        return out

    def remove_run(self, run: str) -> list[Held]:
        """Take the queued (not running) calls of a run out of the queue."""
        gone = [h for _, _, h in self._heap if h.run == run]
        if gone:
            self._heap = [e for e in self._heap if e[2].run != run]
            heapq.heapify(self._heap)
        return gone

    def drain(self) -> tuple[list[Held], list[Held]]:
        """Empty the queue: (queued, in flight)."""
        queued, inflight = [h for _, _, h in self._heap], list(self.inflight.values())
        self._heap.clear()
        self.inflight.clear()
        return queued, inflight

    def oldest(self) -> Held | None:
        return min((h for _, _, h in self._heap), key=lambda h: h.arrived, default=None)

    def sessions(self) -> int:
        return len({h.session for _, _, h in self._heap} | {h.session for h in
                                                           self.inflight.values()})

    def percentiles(self) -> tuple[float, float]:
        if not self.latencies:
            return 0.0, 0.0
        ordered = sorted(self.latencies)
        return (ordered[len(ordered) // 2],
                ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])
