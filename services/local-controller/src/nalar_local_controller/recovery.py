"""Keeping the held calls honest with the world: the node's instances as their heartbeats say
(joined, restarted, draining, lost: their calls run elsewhere), calls no instance came up for,
dispatches or `done`s lost on the way (reconciled with the futures stream and the hosts), and
the claim on every held message kept alive."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView
from nalar_common.errors import NoInstance
from nalar_common.logging import get_logger
from nalar_common.wire import ControlReply, ControlRequest

from nalar_local_controller.book import Book
from nalar_local_controller.dispatch import Dispatcher
from nalar_local_controller.held import Held
from nalar_local_controller.outcomes import Outcomes
from nalar_local_controller.queues import InstanceQueue
from nalar_local_controller.settings import LocalControllerSettings

log = get_logger(__name__)

Control = Callable[[str, ControlRequest], Awaitable[ControlReply]]


class Recovery:
    def __init__(self, bus: Bus, node: str, book: Book, view: ClusterView,
                 dispatcher: Dispatcher, outcomes: Outcomes, control: Control,
                 settings: LocalControllerSettings) -> None:
        self.bus, self.node, self.book, self.view = bus, node, book, view
        self.dispatcher, self.outcomes, self.control = dispatcher, outcomes, control
        self.settings = settings
        self.reconcile_all = False  # after a reconnect: check every dispatch, not only old
        self._last_reconcile = 0.0

    # -- instances -----------------------------------------------------------------------
    def sync_instances(self) -> None:
        live = {i.instance: i for i in self.view.live() if i.node == self.node}
        queues = self.book.queues
        for iid, info in live.items():
            q = queues.get(iid)
            if q is None:
                q = queues[iid] = InstanceQueue(info,
                                                edf=self.settings.placement == "dynamic")
                log.info("instance.joined", instance=iid, agent=info.agent)
                self.dispatcher.steal_for(q)
            else:
                restarted = (info.pid, info.started_at) != (q.info.pid, q.info.started_at)
                q.info = info
                if restarted and q.inflight:  # a new process under the same id: what the
                    lost = list(q.inflight.values())  # old one ran is gone with it
                    q.inflight.clear()
                    log.warning("instance.restarted", instance=iid, requeued=len(lost))
                    for held in lost:
                        self.outcomes.run_again(held)
                if info.draining and q.queued:
                    self.requeue(q)
        for iid in [i for i in queues if i not in live]:
            self._instance_gone(queues.pop(iid))
        for agent in list(self.book.unplaced):
            for held in self.book.unplaced.pop(agent):
                self.dispatcher.place(held)

    def requeue(self, queue: InstanceQueue) -> None:
        """The instance is draining: its queued calls go to another instance."""
        moved = queue.take(lambda h: False)
        for held in moved:
            held.instance = None
            self.book.stats["requeued"] += 1
            self.dispatcher.place(held)
        if moved:
            log.info("instance.draining_requeued", instance=queue.info.instance,
                     calls=len(moved))
            self.dispatcher.flush_soon()

    def _instance_gone(self, queue: InstanceQueue) -> None:
        """Its host stopped heartbeating: run its queued calls elsewhere now, and its
        in-flight ones as new attempts after a backoff (or dead-letter them)."""
        queued, inflight = queue.drain()
        log.warning("instance.lost", instance=queue.info.instance,
                    requeued=len(queued) + len(inflight))
        self.book.stats["requeued"] += len(queued) + len(inflight)
        for held in queued:
            held.instance = None
            self.dispatcher.place(held)
        for held in inflight:
            self.outcomes.run_again(held)

    async def expire_unplaced(self, now: float) -> None:
        """Calls no instance of their agent came up for within `no_instance_timeout_s`."""
        limit = self.settings.no_instance_timeout_s
        for agent, waiting in list(self.book.unplaced.items()):
            for held in list(waiting):
                if now - held.arrived > limit:
                    waiting.remove(held)
                    await self.outcomes.fail(held, NoInstance(
                        f"no instance of agent {agent!r} came up within {limit:.0f}s",
                        details={"agent": agent, "node": self.node}))
            if not waiting:
                self.book.unplaced.pop(agent, None)

    # -- lost messages ---------------------------------------------------------------------
    async def reconcile_due(self) -> None:
        """Every half `reconcile_after_s` (at once after a reconnect)."""
        if self.reconcile_all or \
                time.monotonic() - self._last_reconcile > self.settings.reconcile_after_s / 2:
            self._last_reconcile = time.monotonic()
            await self.reconcile(1.0 if self.reconcile_all else self.settings.reconcile_after_s)

    async def reconcile(self, older_than: float) -> None:
        """Dispatched calls not reported done for `older_than` s: those whose future is
        stored are done (the `done` was lost); those their host says it is not running (the
        dispatch was lost) are dispatched again. A host that does not answer is left to its
        heartbeat: if it is gone, its calls move when its instance expires."""
        self.reconcile_all = False
        now = time.time()
        stale = [h for h in self.book.held.values()
                 if h.dispatched and now - h.dispatched_at > older_than]
        if not stale:
            return
        stale = await self.finish_resolved(stale)
        by_host: dict[str, list[Held]] = {}
        for held in stale:
            queue = self.book.queue_of(held)
            if queue is not None:
                by_host.setdefault(queue.info.host, []).append(held)
        lost: list[Held] = []
        for host, calls in by_host.items():
            reply = await self.control(host, ControlRequest.running([h.token for h in calls]))
            if not reply.ok:
                continue
            running = set(reply.running)
            lost += [h for h in calls if h.token not in running]
        for held in await self.finish_resolved(lost):
            if not self.book.holds(held) or not held.dispatched:
                continue
            self.book.off_instance(held)
            log.warning("dispatch.lost", run_id=held.run, future_id=held.future,
                        instance=held.instance)
            self.book.stats["reconciled"] += 1
            self.outcomes.run_again(held)
        await self.dispatcher.flush()

    async def finish_resolved(self, calls: list[Held]) -> list[Held]:
        """Complete the calls whose future is stored; return the others."""
        if not calls:
            return []
        names = self.bus.names
        subjects = {names.future(h.run, h.future): h for h in calls}
        try:
            found = await self.bus.multi_last(names.futures_stream, list(subjects))
        except Exception as exc:
            log.warning("reconcile.lookup_failed", error=str(exc))
            return []
        for subject in found:
            held = subjects[subject]
            if not self.book.holds(held):
                continue
            self.book.end(held)
            queue = self.book.off_instance(held)
            if queue is not None:
                self.dispatcher.refill(queue)
            self.book.stats["reconciled"] += 1
            await held.ack()
        return [h for s, h in subjects.items() if s not in found]

    async def keep_claims(self) -> None:
        """Tell JetStream every held call is still being worked on (its ack wait restarts)."""
        for held in list(self.book.held.values()):
            try:
                await held.in_progress()
            except Exception:
                pass
