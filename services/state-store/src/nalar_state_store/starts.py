"""Run starts: a run whose `created` event is in the journal starts, even if the gateway that
wrote the event died before it published the driver call. The journal is the outbox and this
is its relay: every `created` event puts the run in a Redis sorted set, due `start_grace_s`
later; a due run that has not progressed gets its driver call published here, the same call
with the same message id as the gateway's. Several state stores may run: `ZREM` decides which
one checks a run.

No second driver call for a run whose call was published:
- within the stream's duplicate window (120 s) of the gateway's publish, JetStream drops ours
  (same `Nats-Msg-Id`); the ack says `duplicate` and nothing else happens;
- later (a state store that was down, a backlog), the message id no longer protects: the
  driver calls queued in NALAR_CALLS are looked through for the run's, and the run's progress
  is read again after that (a driver call leaves the stream only once its driver has run,
  which journals `started` first).

Most runs start at once, and checking each of them (a claim, three reads from the streams and
a removal) cost more than the rest of their admission. So the state store also listens to the
journal's `started` events (a core subscription): a run whose driver started is not put in the
set, or is taken out of it in batches. Only a run whose `started` was not heard (its driver
never ran, this state store was away or restarted) is checked; hearing one is never needed
for a run to start.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from nalar_common.bus import Bus
from nalar_common.calls import CallSpec
from nalar_common.cluster import ClusterView
from nalar_common.journal import Event, decode, record
from nalar_common.logging import get_logger
from nalar_common.state import SessionStore
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from redis.asyncio.client import Pipeline

log = get_logger(__name__)

RETRY_S = 1.0  # no driver instance, NALAR_CALLS full, NATS away: look again then
CLAIM_S = 30.0  # a run being checked is due again after this if its checker died
# claim a run that is still due (its score not past now) by moving it a lease ahead
_CLAIM = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""
SKEW_S = 30.0  # margin on the duplicate window: clocks, a gateway's slow publish
WINDOW_TTL_S = 60.0  # how long the stream's duplicate window is cached
STARTED_KEEP_S = 60.0  # how long a heard `started` keeps its run out of the set
STARTED_KEEP_MAX = 200_000


class Outcome:
    """What checking a due run found (or did)."""

    STARTED = "started"  # published here: the gateway had not
    DUPLICATE = "duplicate"  # published here, dropped as the gateway's duplicate
    PROGRESSED = "progressed"  # the driver started, or the run has ended
    QUEUED = "queued"  # the gateway's driver call waits in NALAR_CALLS
    GONE = "gone"  # no `created` event (past retention)
    LATE = "late"  # its deadline passed: `RunDeadlines` fails it
    RETRY = "retry"  # no driver instance yet


def driver_call(run: str, created: dict[str, Any]) -> CallSpec:
    """The driver call of a run, from its `created` event, as `Runtime.submit_root` makes it
    (future `0`, attempt 1, hop 0): its message id is the gateway's, `<run>.0.c0.a1`."""
    return CallSpec(run=run, future=ROOT_FUTURE, session=str(created.get("session_id") or ""),
                    agent=DRIVER_AGENT, method=str(created.get("workflow") or ""),
                    kwargs=dict(created.get("input") or {}),
                    priority=int(created.get("priority") or 0),
                    deadline=created.get("deadline"), created_at=time.time())


class RunStarts:
    BATCH = 100

    def __init__(self, bus: Bus, store: SessionStore, view: ClusterView, *, grace_s: float,
                 interval_s: float = 0.5) -> None:
        self.bus, self.store, self.view = bus, store, view
        self.grace_s, self.interval_s = grace_s, interval_s
        self.key = bus.names.redis("starts")
        self._claim = store.r.register_script(_CLAIM)
        self.recovered = 0
        self._window: tuple[float, float] | None = None  # (read at, seconds)
        self._started: OrderedDict[str, float] = OrderedDict()  # run -> when heard
        self._drop: list[str] = []  # heard started, to be taken out of the set

    async def add(self, run: str, created_at: float) -> None:
        await self.store.r.zadd(self.key, {run: created_at + self.grace_s})

    def add_to(self, pipe: Pipeline, run: str, created_at: float) -> bool:
        """Queue `add` on a Redis pipeline, unless the run's driver was heard starting; True
        if queued."""
        if self.started(run):
            return False
        pipe.zadd(self.key, {run: created_at + self.grace_s})
        return True

    async def subscribe(self) -> Any:
        """Hear the journal's `started` events (core: one missed only costs its run a
        check)."""
        return await self.bus.nc.subscribe(self.bus.names.run_event("*", Event.STARTED),
                                           cb=self._on_started)

    async def _on_started(self, msg: Msg) -> None:
        self.heard_started(msg.subject.rsplit(".", 2)[-2])

    def started(self, run: str) -> bool:
        """Whether the run's driver was heard starting (lately)."""
        return run in self._started

    def heard_started(self, run: str) -> None:
        """The run's driver started: keep the run out of the set (for `STARTED_KEEP_S`) and
        take it out at the next tick."""
        if run in self._started:
            return  # a later attempt (a resumed driver)
        now = time.monotonic()
        self._started[run] = now
        self._drop.append(run)
        while self._started and (len(self._started) > STARTED_KEEP_MAX or
                                 now - next(iter(self._started.values())) > STARTED_KEEP_S):
            self._started.popitem(last=False)

    async def drop_started(self) -> int:
        """Take the runs heard starting out of the set (a few commands for all of them)."""
        runs, self._drop = self._drop, []
        try:
            async with self.store.r.pipeline(transaction=False) as pipe:
                for i in range(0, len(runs), 1000):
                    pipe.zrem(self.key, *runs[i:i + 1000])
                await pipe.execute()
        except Exception:
            self._drop[:0] = runs[-STARTED_KEEP_MAX:]  # next tick (the rest: checked as due)
            raise
        return len(runs)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if self._drop:
                    await self.drop_started()
                await self.start_due()
            except Exception as exc:  # Redis or NATS away: try again next tick
                log.warning("starts.check_failed", error=str(exc))

    async def start_due(self) -> int:
        """Check every run that is due (a batch at a time, its runs at once: every run
        passes here once); the number started here."""
        started = 0
        while True:
            due: Any = await self.store.r.zrangebyscore(self.key, "-inf", time.time(),
                                                        start=0, num=self.BATCH)
            runs = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in due]
            started += sum(await asyncio.gather(*(self._take(run) for run in runs)))
            if len(runs) < self.BATCH:
                return started

    async def _take(self, run: str) -> int:
        """Claim the due run for a lease (another state store skips it; if this one dies
        while checking, the run is due again when the lease ends), check it, and drop it only
        once the outcome is known."""
        now = time.time()
        if not await self._claim(keys=[self.key], args=[run, now, now + CLAIM_S]):
            return 0  # another state store took it
        try:
            outcome = await self.check(run)
        except Exception as exc:
            log.warning("run.start_check_failed", run_id=run, error=str(exc))
            outcome = Outcome.RETRY
        if outcome == Outcome.RETRY:
            await self.store.r.zadd(self.key, {run: time.time() + RETRY_S})
        else:
            await self.store.r.zrem(self.key, run)
        return 1 if outcome == Outcome.STARTED else 0

    async def check(self, run: str) -> str:
        """Publish the run's driver call unless it was published or the run progressed."""
        n = self.bus.names
        stored = await self.bus.direct_get_last(n.runs_stream, n.run_event(run, Event.CREATED))
        if stored is None:
            return Outcome.GONE
        created = decode(stored)
        deadline = created.get("deadline")
        if deadline is not None and float(deadline) <= time.time():
            return Outcome.LATE
        if await self.progressed(run):
            return Outcome.PROGRESSED
        if not self.view.live_instances(DRIVER_AGENT):
            return Outcome.RETRY
        age = time.time() - float(created.get("ts") or 0.0)
        if age > await self._duplicate_window() - SKEW_S:
            if await self.driver_call_queued(run):
                return Outcome.QUEUED
            if await self.progressed(run):  # its call was acked while we looked
                return Outcome.PROGRESSED
        spec = driver_call(run, created)
        node = self.view.choose_node(DRIVER_AGENT, spec.session)
        if node is None:
            return Outcome.RETRY
        snap = self.view.snapshot
        ack = await self.bus.js.publish(n.call(node, DRIVER_AGENT), spec.encode(),
                                        headers=spec.headers(snap.revision if snap else None),
                                        timeout=5)
        if ack.duplicate:
            return Outcome.DUPLICATE
        await record(self.bus, run, Event.FUTURE_CREATED, {
            "future": ROOT_FUTURE, "agent": DRIVER_AGENT, "method": spec.method, "deps": [],
            "parent": "", "session": spec.session, "node": node,
            "created_at": spec.created_at, "sent_by": "state-store"})
        self.recovered += 1
        log.info("run.start_recovered", run_id=run, session_id=spec.session,
                 workflow=spec.method, node=node, age_s=round(age, 3))
        return Outcome.STARTED

    async def progressed(self, run: str) -> bool:
        """Whether the run moved past its admission: its driver started (or its call was
        dead-lettered...), or it has a result (finished, cancelled, timed out). The driver
        call's `future_created` does not count: a gateway journals it right behind the call,
        before the stream has confirmed storing the call."""
        n = self.bus.names
        last = await self.bus.multi_last(n.runs_stream, [n.run_events_last(run)])
        admission = {n.run_event(run, Event.CREATED), n.run_event(run, Event.FUTURE_CREATED)}
        if any(s not in admission for s in last):
            return True
        return await self.bus.direct_get_last(n.futures_stream,
                                              n.future(run, ROOT_FUTURE)) is not None

    async def driver_call_queued(self, run: str) -> bool:
        """Whether a driver call of the run is in NALAR_CALLS (queued, or held by a local
        controller: calls stay there until acked). One direct get per queued driver call;
        only runs checked past the duplicate window come here."""
        n = self.bus.names
        subject, seq = n.call("*", DRIVER_AGENT), 1
        while True:
            try:
                msg = await self.bus.js.get_msg(n.calls_stream, seq=seq, subject=subject,
                                                next=True, direct=True)
            except NotFoundError:
                return False
            if (msg.headers or {}).get(H.RUN) == run:
                return True
            if not msg.seq:  # a server that does not say where it is: no way on
                return False
            seq = msg.seq + 1

    async def _duplicate_window(self) -> float:
        now = time.monotonic()
        if self._window is None or now - self._window[0] > WINDOW_TTL_S:
            info = await self.bus.js.stream_info(self.bus.names.calls_stream)
            self._window = (now, float(info.config.duplicate_window or 0.0))
        return self._window[1]
