"""LocalController: admits the calls for its node, waits for their dependencies, queues them per
instance by priority, and dispatches to agent hosts when an instance has a free slot.

A call's JetStream message stays unacked until its agent host reports it done, so a controller
that dies loses nothing: JetStream redelivers what it held. The controller wires small parts
together (docs/architecture.md shows how a call moves through them):

    Admission   a message becomes a held call: run facts, hooks, pin, dependencies
    Hooks       cancellation, authorization, guardrails, deadlines, retries, replay
    Dispatcher  placement (pure, `placement`), instance queues, the outbox to the hosts
    Outcomes    done, failed, retried, run again, dead-lettered, answered from a replay
    Migration, Provisioning   what the policy's snapshots ask of this node
    Recovery    instances joining, draining and lost; lost messages; claims kept alive
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nalar_common.authz import PolicyFile
from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView
from nalar_common.dlq import dead_letter
from nalar_common.futures import FutureWaiter
from nalar_common.guardrails import GuardrailFile
from nalar_common.logging import get_logger
from nalar_common.process import Shutdown
from nalar_common.state import SessionStore
from nalar_common.wire import DecodeError, Done, GuardAnswer, Telemetry
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nalar_local_controller import placement
from nalar_local_controller.access import Authorization
from nalar_local_controller.admission import Admission
from nalar_local_controller.book import Book, OneShot, Tasks
from nalar_local_controller.dispatch import Dispatcher
from nalar_local_controller.guard import CallGuard
from nalar_local_controller.guarding import Guardrails
from nalar_local_controller.hooks import CallHook, Hooks
from nalar_local_controller.lifecycle_hooks import CancelledRuns, Deadlines, Retries
from nalar_local_controller.migration import Migration
from nalar_local_controller.outcomes import Outcomes
from nalar_local_controller.pins import Pins
from nalar_local_controller.provisioning import Provisioning
from nalar_local_controller.recovery import Recovery
from nalar_local_controller.replay import ReplayHook, Replays
from nalar_local_controller.runs import RunBook
from nalar_local_controller.settings import LocalControllerSettings
from nalar_local_controller.telemetry import telemetry

log = get_logger(__name__)


class LocalController:
    def __init__(self, bus: Bus, node: str, settings: LocalControllerSettings,
                 store: SessionStore | None = None, *, access: PolicyFile,
                 guardrails: GuardrailFile) -> None:
        self.bus, self.node, self.settings, self.store = bus, node, settings, store
        self.names = bus.names
        self.view = ClusterView(bus)
        self.waiter = FutureWaiter(bus)
        self.book, self.tasks, self.runs = Book(), Tasks(), RunBook(bus)
        once = OneShot()
        self.pins = Pins(bus.names, self.view)
        self.dispatcher = Dispatcher(
            bus, node, self.book, self.view, self.tasks,
            placement.Rules(settings.placement, settings.spill_queue),
            revisions=lambda: self.hooks.revisions())
        self.outcomes = Outcomes(bus, node, self.book, self.tasks, self.dispatcher, settings)
        self.dispatcher.fail = self.outcomes.fail
        self.cancels = CancelledRuns(self.book, self.outcomes)
        chain: list[CallHook] = [self.cancels,
                                 Authorization(access, self.book, self.outcomes)]
        self.guardrails: Guardrails | None = None
        if store is not None:
            self.guardrails = Guardrails(bus, node, CallGuard(store.r, bus.names, guardrails),
                                         self.runs, self.book, self.tasks, self.outcomes)
            chain.append(self.guardrails)
        replay = ReplayHook(Replays(bus, self.waiter), self.view, self.book, self.tasks,
                            self.outcomes)
        chain += [Deadlines(node, self.book, self.outcomes), Retries(self.book, self.outcomes),
                  replay]
        self.hooks = Hooks(chain)
        self.admission = Admission(self.book, self.runs, self.hooks, self.pins, self.waiter,
                                   self.dispatcher, self.outcomes, self.tasks, settings,
                                   cancelled=self.cancels)
        replay.again = self.admission.place
        if self.guardrails is not None:
            self.guardrails.readmit = self.admission.admit
            self.guardrails.admit_later = self.admission.admit_later
        self.provisioning = Provisioning(bus, node, self.book, self.view, self.tasks, once,
                                         settings, requeue=self._requeue)
        self.recovery = Recovery(bus, node, self.book, self.view, self.dispatcher,
                                 self.outcomes, self.provisioning.control, settings)
        self.migration = Migration(bus, node, self.book, self.dispatcher, self.pins, store,
                                   once, settings)
        self._stopping = asyncio.Event()
        bus.on_reconnect(self._on_reconnect)

    @property
    def stats(self) -> dict[str, int]:
        return self.book.stats

    def _requeue(self, queue: Any) -> None:
        self.recovery.requeue(queue)

    # -- lifecycle -----------------------------------------------------------------
    async def run(self) -> None:
        await self.bus.ensure_topology()
        try:
            await self._run()
        except* Shutdown:
            log.info("local_controller.stopped", node=self.node)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self.tasks.start(tg)
            tg.create_task(self.view.run())
            tg.create_task(self.dispatcher.run())
            await self.view.wait_ready()
            self.recovery.sync_instances()
            self.pins.kv = await self.bus.kv(self.names.pins_bucket)
            nc = self.bus.nc
            done_sub = await nc.subscribe(self.names.done(self.node), cb=self._on_done)
            await nc.subscribe(self.names.all_cancels, cb=self._on_cancel)
            await nc.subscribe(self.names.all_resumes, cb=self._on_resume)
            await nc.subscribe(self.names.guardrail(self.node), cb=self._on_guard)
            consumer = ConsumerConfig(
                durable_name=self.names.node_consumer(self.node),
                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.bus.settings.call_ack_wait_s,
                max_ack_pending=self.settings.max_held,
                filter_subject=self.names.calls_for_node(self.node))
            calls_sub = await self.bus.js.subscribe(
                self.names.calls_for_node(self.node), stream=self.names.calls_stream,
                durable=consumer.durable_name, cb=self.admission.on_call, manual_ack=True,
                config=consumer, pending_msgs_limit=-1)
            log.info("local_controller.started", node=self.node)
            tg.create_task(self._telemetry_loop())
            tg.create_task(self._housekeeping_loop())
            tg.create_task(self._watch_instances())
            await self._stopping.wait()
            # stop intake, hand back what has not started, then let the hosts it started
            # finish (their `done` still comes here), and only then stop listening
            await calls_sub.unsubscribe()
            await self._release_waiting()
            await self.provisioning.stop_spawned()
            await done_sub.unsubscribe()
            raise Shutdown

    def stop(self) -> None:
        self._stopping.set()

    async def _on_reconnect(self) -> None:
        self.recovery.reconcile_all = True  # dispatches and `done`s sent meanwhile may be lost

    async def _release_waiting(self) -> None:
        """On a clean stop, hand back what has not started (redelivered at once to the next
        controller of this node); calls running on hosts stay claimed until ack wait."""
        for held in list(self.book.held.values()):
            if held.dispatched:
                continue
            self.book.unqueue(held)  # handed back: nothing here may dispatch it any more
            self.book.end(held)
            try:
                await held.nak()
            except Exception:
                pass

    # -- messages ------------------------------------------------------------------
    async def _on_done(self, msg: Msg) -> None:
        try:
            done = Done.decode(msg.headers)
        except DecodeError as exc:
            await dead_letter(self.bus, service=self.outcomes.executor, subject=msg.subject,
                              data=msg.data, headers=msg.headers, reason=exc.message)
            return
        held = self.outcomes.dispatch_of(done)
        if held is None or await self.hooks.after_done(held, done):
            return
        await self.outcomes.done(held, done)

    async def _on_cancel(self, msg: Msg) -> None:
        await self.cancels.cancel(msg.subject.rsplit(".", 1)[1])

    async def _on_resume(self, msg: Msg) -> None:
        if self.guardrails is not None:
            self.guardrails.resume(msg.subject.rsplit(".", 1)[1])

    async def _on_guard(self, msg: Msg) -> None:
        if self.guardrails is not None:
            reply = await self.guardrails.answer(msg.data)
        else:
            reply = GuardAnswer(ok=False, action="unavailable",
                                details={"reason": "this controller has no guardrail store"})
        if msg.reply:
            await self.bus.nc.publish(msg.reply, reply.encode())

    # -- policy --------------------------------------------------------------------
    async def _watch_instances(self) -> None:
        while True:
            await self.view.wait_changed()
            self.recovery.sync_instances()
            snap = self.view.snapshot
            if snap is not None and snap.revision != self.dispatcher.policy_rev:
                self.dispatcher.policy_rev = snap.revision
                await self.migration.apply(snap)
                self.provisioning.apply(snap)
                await self.dispatcher.flush()

    # -- periodic ------------------------------------------------------------------
    async def _housekeeping_loop(self) -> None:
        last = {"progress": time.monotonic(), "recheck": time.monotonic()}
        while True:
            await asyncio.sleep(self.settings.housekeeping_interval_s)
            try:
                await self._housekeeping(last)
            except Exception:
                log.exception("local_controller.housekeeping_failed")

    async def _housekeeping(self, last: dict[str, float]) -> None:
        self.recovery.sync_instances()
        now = time.time()
        await self.hooks.tick(now)  # deadlines; paused calls checked again
        await self.recovery.reconcile_due()
        await self.recovery.expire_unplaced(now)
        if self.waiter.pending and time.monotonic() - last["recheck"] > \
                self.settings.recheck_interval_s:
            last["recheck"] = time.monotonic()
            await self.waiter.recheck()  # dependencies whose result we may have missed
        if time.monotonic() - last["progress"] > self.bus.settings.call_ack_wait_s / 3:
            last["progress"] = time.monotonic()
            await self.recovery.keep_claims()

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.telemetry_interval_s)
            try:
                await self.bus.nc.publish(self.names.telemetry(self.node),
                                          self.telemetry().encode())
            except Exception as exc:
                log.warning("telemetry.publish_failed", error=str(exc))

    def telemetry(self) -> Telemetry:
        spawned = len(self.provisioning.spawned)
        return telemetry(self.node, self.book, self.settings.spawn_hosts - spawned)


__all__ = ["LocalController"]
