"""Placing calls on instances and sending them to their hosts: the queues' next calls go out
whenever a slot is free, in batches from an outbox (placement code is synchronous); a call
no instance here can take goes to another node, or waits for an instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView
from nalar_common.errors import InvalidInput, NalarError
from nalar_common.logging import get_logger
from nalar_common.subjects import Headers as H
from nalar_common.wire import DepResult, Dispatch

from nalar_local_controller import placement
from nalar_local_controller.book import Book, Tasks
from nalar_local_controller.held import CallState, Held
from nalar_local_controller.queues import InstanceQueue

log = get_logger(__name__)

Fail = Callable[[Held, NalarError], Coroutine[Any, Any, None]]


class Dispatcher:
    def __init__(self, bus: Bus, node: str, book: Book, view: ClusterView, tasks: Tasks,
                 rules: placement.Rules, revisions: Callable[[], dict[str, str]]) -> None:
        self.bus, self.node, self.book, self.view, self.tasks = bus, node, book, view, tasks
        self.rules, self.revisions = rules, revisions
        self.names = bus.names
        self.policy_rev = -1  # the policy snapshot applied last (each dispatch names it)
        self.fail: Fail | None = None  # wired by the controller: how a call ends in error
        self._outbox: list[tuple[str, bytes, Held]] = []
        self._ready = asyncio.Event()
        self._seq = 0

    # -- placing ---------------------------------------------------------------------------
    def choose(self, held: Held) -> InstanceQueue | None:
        return placement.choose(held, self.book.queues.values(), self.view.snapshot,
                                self.rules, time.time())

    def place(self, held: Held) -> None:
        """Queue the call on its instance here and send what may start; else hand it to
        another node that has an instance; else keep it until one comes up."""
        queue = self.choose(held)
        if queue is None:
            other = self._other_node(held.agent, held.session)
            if other is not None:
                self.tasks.spawn(self.forward(held, other))
            else:
                self.book.wait_for_instance(held)
            return
        queue.push(held)
        self.dispatch(queue)

    def place_later(self, held: Held, delay: float = 1.0) -> None:
        held.state = CallState.BACKOFF

        async def again(h: Held) -> None:
            self.place(h)
            await self.flush()

        self.tasks.later(delay, self.book, held, again)

    def _other_node(self, agent: str, session: str) -> str | None:
        node = self.view.choose_node(agent, session)
        return node if node and node != self.node and self.view.live_instances(agent, node) \
            else None

    def steal_for(self, idle: InstanceQueue) -> None:
        taken = placement.steal(idle, self.book.queues.values(), self.view.snapshot,
                                self.rules)
        for held in taken:
            idle.push(held)
        if taken:
            self.book.stats["stolen"] += len(taken)
            self.dispatch(idle)

    def refill(self, queue: InstanceQueue) -> None:
        """A slot of the instance came free: its next queued call, else one stolen."""
        self.dispatch(queue)
        if queue.free_slots > 0 and not queue.queued:
            self.steal_for(queue)

    # -- sending ---------------------------------------------------------------------------
    def dispatch(self, queue: InstanceQueue) -> None:
        """Send the queue's next calls while the instance has free slots (via the outbox)."""
        while queue.free_slots > 0:
            held = queue.pop()
            if held is None:
                return
            self._seq += 1
            held.dispatch(f"{self.node}:{self._seq}", time.time())
            headers = held.headers
            if self.policy_rev > 0:
                headers = {**headers, H.POLICY_REV: str(self.policy_rev)}
            payload = self._payload(held, headers, queue, carry=True)
            if len(payload) > self.bus.nc.max_payload - 1024 and held.dep_results:
                # the dependencies together are too large: the host reads them itself
                payload = self._payload(held, headers, queue, carry=False)
            if len(payload) > self.bus.nc.max_payload - 1024:
                assert self.fail is not None
                self.tasks.spawn(self.fail(held, InvalidInput(
                    f"call with its arguments is {len(payload)} bytes, over the message limit "
                    f"of {self.bus.nc.max_payload}", details={"limit": self.bus.nc.max_payload})))
                continue
            queue.inflight[held.key] = held
            queue.dispatched += 1
            self.book.stats["dispatched"] += 1
            self._outbox.append((self.names.exec(queue.info.host), payload, held))
            self._ready.set()

    def _payload(self, held: Held, headers: dict[str, str], queue: InstanceQueue, *,
                 carry: bool) -> bytes:
        return Dispatch(
            call=held.data, headers=headers, instance=queue.info.instance,
            deps={f: DepResult(data=r.data if carry else b"", headers=r.headers)
                  for f, r in held.dep_results.items()},
            dispatched_at=held.dispatched_at, token=held.token, guard=held.guarded,
            replay_of=held.replay_of, revisions=self.revisions()).encode()

    async def flush(self) -> None:
        """Publish what is in the outbox, in order; a dispatch that cannot be sent goes back
        to be placed again."""
        self._ready.clear()
        reply = self.names.done(self.node)
        batch, self._outbox = self._outbox, []
        for subject, payload, held in batch:
            try:
                await self.bus.nc.publish(subject, payload, reply=reply)
            except Exception as exc:
                log.warning("dispatch.publish_failed", run_id=held.run, future_id=held.future,
                            error=str(exc))
                self.book.off_instance(held)
                held.undispatch()
                self.place_later(held)

    def flush_soon(self) -> None:
        self._ready.set()

    async def run(self) -> None:
        """Publish dispatches queued by synchronous placement code, in batches."""
        while True:
            await self._ready.wait()
            await self.flush()

    async def forward(self, held: Held, node: str, instance: str | None = None) -> None:
        """Hand a call to another node: republish with a new message id, then ack ours. A
        migrated call names its instance there (`Nalar-Instance`). Only a call still held
        here: one that ended meanwhile (failed, cancelled) is not run again elsewhere."""
        if not self.book.end(held):
            return
        hop = int(held.headers.get(H.HOP, "0")) + 1
        headers = {**held.headers, H.HOP: str(hop),
                   H.MSG_ID: f"{held.key}.c{hop}.a{held.headers.get(H.ATTEMPT, '1')}"}
        headers.pop(H.INSTANCE, None)
        if instance:
            headers[H.INSTANCE] = instance
        await self.bus.js.publish(self.names.call(node, held.agent), held.data, headers=headers)
        await held.ack()
        self.book.stats["forwarded"] += 1
        log.info("call.forwarded", run_id=held.run, future_id=held.future, to_node=node)
