"""Signal timeouts: a run that waits for a signal with `timeout=` gets a `Timeout` in its place
when the deadline passes, and its driver is woken. Timers come from the journal's `signal`
events through a durable consumer; each stays unacked (kept alive with `in_progress`) until it
fires or its signal is given (the journal's `signalled` event, on a core subscription), so a
state store that dies loses none. A `signalled` event it missed leaves the timer to its
deadline, which then finds the signal given and only acks."""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Any

from nalar_common.bus import Bus
from nalar_common.calls import publish_result, resume_driver
from nalar_common.cluster import ClusterView
from nalar_common.dlq import dead_letter
from nalar_common.envelope import Envelope
from nalar_common.errors import Timeout
from nalar_common.journal import Event, is_waiting, record
from nalar_common.logging import get_logger
from nalar_common.subjects import DRIVER_AGENT, signal_future
from nalar_common.subjects import Headers as H
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = get_logger(__name__)

ACK_WAIT_S = 60.0


class SignalTimers:
    def __init__(self, bus: Bus, view: ClusterView) -> None:
        self.bus, self.view = bus, view
        self.names = bus.names
        self._heap: list[tuple[float, str, str]] = []
        self._msgs: dict[tuple[str, str], list[Msg]] = {}
        self._deadline: dict[tuple[str, str], float] = {}
        self._changed = asyncio.Event()
        self.fired = 0

    async def subscribe(self) -> Any:
        subject = self.names.run_event("*", Event.SIGNAL)
        config = ConsumerConfig(durable_name="state_store_signal_timers",
                                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                ack_wait=ACK_WAIT_S, max_ack_pending=100_000,
                                filter_subject=subject)
        return await self.bus.js.subscribe(subject, stream=self.names.runs_stream,
                                           durable=config.durable_name, cb=self._on_signal,
                                           manual_ack=True, config=config)

    async def watch_given(self) -> Any:
        """Drop the timer of a signal as it is given: without this each timed signal held its
        event (and an `in_progress` every claim round) until its deadline, however long ago
        its run went on (bench/lifetimes.py: 10,000 lifetimes with a one-day timeout)."""
        return await self.bus.nc.subscribe(self.names.run_event("*", Event.SIGNALLED),
                                           cb=self._on_given)

    async def _on_given(self, msg: Msg) -> None:
        try:
            body = Envelope.decode(msg.data, expect="event").body
            key = (str(body["run"]), str(body["signal"]))
        except Exception:
            return  # the timer fires at its deadline and finds out
        if key not in self._deadline or not await self._given(*key):
            return  # not one of ours, or not stored (its timer still decides)
        if self._deadline.pop(key, None) is None:
            return
        if len(self._heap) > 2 * len(self._deadline) + 1024:  # drop the stale entries
            self._heap = [e for e in self._heap if self._deadline.get((e[1], e[2])) == e[0]]
            heapq.heapify(self._heap)
        for m in self._msgs.pop(key, []):
            try:
                await m.ack()
            except Exception:
                pass

    async def _on_signal(self, msg: Msg) -> None:
        try:
            body = Envelope.decode(msg.data, expect="event").body
            run, name = str(body["run"]), str(body["name"])
            deadline = body.get("deadline")
        except Exception as exc:
            await dead_letter(self.bus, service="state-store", subject=msg.subject,
                              data=msg.data, headers=msg.headers,
                              reason=f"unreadable signal event: {exc}", stream=True)
            await msg.term()
            return
        if deadline is None or await self._given(run, name):
            await msg.ack()  # no timeout, or given already (e.g. while this store was down)
            return
        key = (run, name)
        self._msgs.setdefault(key, []).append(msg)
        if key not in self._deadline or float(deadline) < self._deadline[key]:
            self._deadline[key] = float(deadline)
            heapq.heappush(self._heap, (float(deadline), run, name))
            self._changed.set()

    async def _given(self, run: str, name: str) -> bool:
        try:
            return await self.bus.direct_get_last(
                self.names.futures_stream, self.names.future(run, signal_future(name))) is not None
        except Exception:
            return False  # the timer decides at its deadline

    async def run(self) -> None:
        """Fire timers as they come due; keep the claim on the pending ones."""
        last_claim = time.monotonic()
        while True:
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                deadline, run, name = heapq.heappop(self._heap)
                if self._deadline.get((run, name)) == deadline:
                    await self._fire(run, name)
            if time.monotonic() - last_claim > ACK_WAIT_S / 3:
                last_claim = time.monotonic()
                for msgs in list(self._msgs.values()):  # `_on_given` drops some meanwhile
                    for m in list(msgs):
                        try:
                            await m.in_progress()
                        except Exception:
                            pass
            wait = min(self._heap[0][0] - time.time(), ACK_WAIT_S / 3) if self._heap \
                else ACK_WAIT_S / 3
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, wait))
            except TimeoutError:
                pass

    async def _fire(self, run: str, name: str) -> None:
        key = (run, name)
        future = signal_future(name)
        try:
            stored = await publish_result(self.bus, {
                H.RUN: run, H.FUTURE: future, H.AGENT: "_signal", H.METHOD: name},
                error=Timeout(f"signal {name!r} did not come in time",
                              details={"signal": name}), executor="state-store")
            if stored:
                self.fired += 1
                log.info("signal.timed_out", run_id=run, signal=name)
                await record(self.bus, run, Event.SIGNALLED,
                             {"signal": name, "future": future, "timeout": True}, acked=True)
                node = self.view.choose_node(DRIVER_AGENT)
                if node is not None and await is_waiting(self.bus, run):
                    await resume_driver(self.bus, run, node)
        except Exception as exc:  # try again shortly
            log.warning("signal.timeout_failed", run_id=run, signal=name, error=str(exc))
            retry = time.time() + 1.0
            self._deadline[key] = retry
            heapq.heappush(self._heap, (retry, run, name))
            return
        self._deadline.pop(key, None)
        for m in self._msgs.pop(key, []):
            try:
                await m.ack()
            except Exception:
                pass
