"""Runs' facts as the gateway recorded them in their `created` event (principal, workflow,
session, replay): read once per run and cached, since they never change."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from nalar_common.auth import Principal
from nalar_common.bus import Bus
from nalar_common.journal import Event, decode

UNKNOWN = Principal("", via="unknown")  # a run created without one (before auth existed)


@dataclass(frozen=True)
class RunFacts:
    """What a run was created with, as the gateway recorded it."""

    run: str
    principal: Principal
    workflow: str
    session: str
    created_at: float
    replay_of: str = ""  # a replay: the run whose journal answers its calls
    overrides: dict[str, Any] = field(default_factory=dict)  # future -> value, in a replay
    fork_at: str = ""  # a fork: calls after this future run live, not from the journal

    def replays(self, future: str) -> bool:
        """Whether the call at `future` is answered from the original run's journal (a
        replay's calls are, a fork's up to its fork point)."""
        if not self.replay_of:
            return False
        return not self.fork_at or not _after(future, self.fork_at)


def _after(future: str, point: str) -> bool:
    """`future` comes after `point` in a driver's order (`3_1` before `4`); other ids (a
    signal's) never do."""
    try:
        return tuple(int(p) for p in future.split("_")) > tuple(int(p) for p in point.split("_"))
    except ValueError:
        return False


class RunBook:
    """Runs' `created` facts, read from the journal once and cached (they never change).

    A run without a `created` event (one started through the SDK rather than the gateway) is
    remembered too, for `absent_ttl_s`: the gateway stores `created` before it publishes the
    run's first call, so its absence is as stable as its facts, and asking the stream again
    on every call of such a run cost a request per call (it halved no-op throughput). The
    short expiry covers a stream replica that had not caught up when it was asked.
    """

    def __init__(self, bus: Bus, cache_size: int = 10_000, absent_ttl_s: float = 30.0) -> None:
        self.bus, self.cache_size, self.absent_ttl_s = bus, cache_size, absent_ttl_s
        self._runs: OrderedDict[str, tuple[RunFacts, float]] = OrderedDict()

    async def get(self, run: str) -> RunFacts:
        hit = self._runs.get(run)
        if hit is not None and hit[1] > time.monotonic():
            self._runs.move_to_end(run)
            return hit[0]
        n = self.bus.names
        stored = await self.bus.direct_get_last(n.runs_stream, n.run_event(run, Event.CREATED),
                                                strict=True)  # absent: the stream said so
        created = decode(stored) if stored is not None else {}
        who = created.get("principal")
        facts = RunFacts(run, Principal.from_dict(who) if isinstance(who, dict) else UNKNOWN,
                         str(created.get("workflow") or ""),
                         str(created.get("session_id") or ""),
                         float(created.get("ts") or 0.0), str(created.get("replay_of") or ""),
                         dict(created.get("overrides") or {}),
                         str(created.get("fork_at") or ""))
        until = math.inf if stored is not None else time.monotonic() + self.absent_ttl_s
        self._runs[run] = (facts, until)
        self._runs.move_to_end(run)
        if len(self._runs) > self.cache_size:
            self._runs.popitem(last=False)
        return facts
