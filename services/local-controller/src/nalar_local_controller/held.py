"""A call the local controller holds, and the state it is in."""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from nalar_common.futurekey import FutureKey
from nalar_common.futures import FutureResult
from nalar_common.subjects import Headers as H

_seq = itertools.count()


def header_int(value: str | None, default: Any) -> Any:
    """A header's integer, or `default` when it is absent or not a number."""
    try:
        return int(value) if value else default
    except ValueError:
        return default


def header_float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class CallState(enum.Enum):
    """Where a held call is. Only a `DISPATCHED` call runs on a host (its `token` names the
    dispatch); every other one can still be failed, moved or cancelled here."""

    ADMITTING = "admitting"  # its checks run (run facts, gate, pin), or will run again
    WAITING = "waiting"  # for its argument futures
    PAUSED = "paused"  # a `pause` guardrail holds it until the run's `resume` signal
    UNPLACED = "unplaced"  # no instance of its agent yet
    QUEUED = "queued"  # in an instance's queue
    BACKOFF = "backoff"  # to be placed again after a delay (a retry, a lost dispatch)
    DISPATCHED = "dispatched"  # sent to a host, which has not reported it done
    DONE = "done"  # no longer held: answered, failed, forwarded or dead-lettered


@dataclass(eq=False)
class Held:
    """A call this controller holds (its JetStream message stays unacked until it is done)."""

    msgs: list[Any]  # JetStream handles: more than one when the same call arrived twice
    data: bytes
    headers: dict[str, str]
    run: str
    future: str
    agent: str
    session: str
    priority: int
    deps: list[str]
    arrived: float = field(default_factory=time.time)
    state: CallState = CallState.ADMITTING
    waiting: set[str] = field(default_factory=set)
    dep_results: dict[str, FutureResult] = field(default_factory=dict)
    instance: str | None = None
    dispatched_at: float = 0.0
    token: str = ""  # names the current dispatch; a `done` for another one is stale
    pinned: str | None = None  # the instance a stateful agent's session is pinned to
    seq: int = field(default_factory=lambda: next(_seq))
    base_priority: int = 0  # what the caller asked for (the policy may raise it)
    deliveries: int = 1  # JetStream deliveries plus runs cut short by a lost instance
    deadline: float | None = None  # epoch seconds; past it the call fails with `Timeout`
    guarded: bool = False  # guardrails bind its run: its host asks before each LLM request
    replay_of: str = ""  # its run replays this one: it may be answered from its journal

    key: str = field(init=False, repr=False)  # `<run>.<future>`, looked up many times

    def __post_init__(self) -> None:
        self.key = str(FutureKey(self.run, self.future))

    @property
    def dispatched(self) -> bool:
        return self.state is CallState.DISPATCHED

    @property
    def method(self) -> str:
        return self.headers.get(H.METHOD, "")

    def dispatch(self, token: str, at: float) -> None:
        self.state, self.token, self.dispatched_at = CallState.DISPATCHED, token, at

    def undispatch(self) -> None:
        """Its dispatch is over without an end (a retry, a lost host): placed again later."""
        self.state, self.instance, self.token = CallState.BACKOFF, None, ""

    async def ack(self) -> None:
        for m in self.msgs:
            await m.ack()

    async def nak(self, delay: float | None = None) -> None:
        for m in self.msgs:
            await m.nak(delay=delay)

    async def in_progress(self) -> None:
        for m in self.msgs:
            await m.in_progress()
