"""LocalController: admits the calls for its node, waits for their dependencies, queues them per
instance by priority, and dispatches to agent hosts when an instance has a free slot.

A call's JetStream message stays unacked until its agent host reports it done, so a controller
that dies loses nothing: JetStream redelivers what it held.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import sys
import time
import uuid
from dataclasses import replace
from typing import Any, TypeVar

from nalar_common.authz import PolicyFile
from nalar_common.bus import Bus
from nalar_common.calls import cancel_run, publish_result
from nalar_common.cluster import ClusterView, PolicySnapshot
from nalar_common.dlq import dead_letter
from nalar_common.envelope import Envelope
from nalar_common.errors import (
    Cancelled,
    DependencyFailed,
    InvalidInput,
    MalformedMessage,
    NalarError,
    NoInstance,
    Timeout,
)
from nalar_common.futurekey import FutureKey
from nalar_common.futures import FutureResult, FutureWaiter
from nalar_common.guardrails import Breach, GuardrailFile
from nalar_common.journal import Event, record
from nalar_common.logging import get_logger
from nalar_common.process import Shutdown
from nalar_common.servers import die_with_parent
from nalar_common.state import SessionStore
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from nalar_local_controller.access import CallAccess, RunBook, RunFacts
from nalar_local_controller.guard import CallGuard, Reserved
from nalar_local_controller.queues import Held, InstanceQueue
from nalar_local_controller.replay import Answer, Replays
from nalar_local_controller.settings import LocalControllerSettings

log = get_logger(__name__)
_T = TypeVar("_T")

_REQUIRED = (H.RUN, H.FUTURE, H.AGENT, H.METHOD)
DEFAULT_PREFILL_RATE = 8000.0  # tokens/s, when an engine reports none
PAUSED_RECHECK_S = 2.0  # calls a guardrail paused are checked again this often
RESERVATION_TTL_S = 3600.0  # an LLM request not settled by then keeps its worst case


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _int(value: str | None, default: _T) -> int | _T:
    """A header's integer, or `default` when it is absent or not a number."""
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _prefill_rate(q: InstanceQueue) -> float:
    """Prompt tokens per wall second of the instance's engine (what recomputing a moved
    session's KV context costs there)."""
    rate = (q.info.engine or {}).get("prefill_tokens_per_s")
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else DEFAULT_PREFILL_RATE


class LocalController:
    RECENT_REPORTED = 64  # sessions per instance in telemetry, for the affinity policy

    def __init__(self, bus: Bus, node: str, settings: LocalControllerSettings,
                 store: SessionStore | None = None, *, access: PolicyFile,
                 guardrails: GuardrailFile) -> None:
        self.bus, self.node, self.settings = bus, node, settings
        self.runs = RunBook(bus)
        self.access = CallAccess(self.runs, access)
        self.guard = CallGuard(store.r, bus.names, guardrails) if store is not None else None
        self.paused: dict[str, list[Held]] = {}  # run -> its calls a guardrail paused
        # LLM requests' reservations until their host settles them (worst case kept if never)
        self._reservations: dict[str, tuple[list[Reserved], str, float]] = {}
        self.store = store  # for moving a migrated session's state lease
        self.names = bus.names
        self.view = ClusterView(bus)
        self.waiter = FutureWaiter(bus)
        self.replays = Replays(bus, self.waiter)
        self.held: dict[str, Held] = {}
        self.queues: dict[str, InstanceQueue] = {}
        self.unplaced: dict[str, list[Held]] = {}
        self.executor_id = f"lc:{node}"
        self._stopping = asyncio.Event()
        self._outbox: list[tuple[str, bytes, Held]] = []
        self._dispatch_seq = 0
        self._applied_rev = -1
        self._routes: dict[tuple[str, str], str] = {}  # route_session entries applied
        self._spawned: dict[str, asyncio.subprocess.Process] = {}  # host id -> process
        self._spawn_seq = 0
        self._done_actions: dict[str, float] = {}  # one-shot action id -> applied at
        self._cancelled: dict[str, float] = {}
        self._outbox_ready = asyncio.Event()
        self._reconcile_all = False
        bus.on_reconnect(self._on_reconnect)
        self._tg: asyncio.TaskGroup | None = None
        self.stats = {"admitted": 0, "dispatched": 0, "completed": 0, "failed": 0,
                      "forwarded": 0, "requeued": 0, "malformed": 0, "migrated": 0,
                      "lease_transfers": 0, "provisioned": 0, "released": 0, "stolen": 0,
                      "retried": 0, "dead_lettered": 0, "timed_out": 0, "reconciled": 0,
                      "denied": 0, "guardrail_stops": 0}

    # -- lifecycle -----------------------------------------------------------------
    async def run(self) -> None:
        await self.bus.ensure_topology()
        try:
            await self._run()
        except* Shutdown:
            log.info("local_controller.stopped", node=self.node)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self.view.run())
            tg.create_task(self._outbox_loop())
            await self.view.wait_ready()
            self._sync_instances()
            self._pins = await self.bus.kv(self.names.pins_bucket)
            done_sub = await self.bus.nc.subscribe(self.names.done(self.node), cb=self._on_done)
            await self.bus.nc.subscribe(self.names.all_cancels, cb=self._on_cancel)
            await self.bus.nc.subscribe(self.names.all_resumes, cb=self._on_resume)
            await self.bus.nc.subscribe(self.names.guardrail(self.node), cb=self._on_guard)
            consumer = ConsumerConfig(
                durable_name=self.names.node_consumer(self.node),
                ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.bus.settings.call_ack_wait_s,
                max_ack_pending=self.settings.max_held,
                filter_subject=self.names.calls_for_node(self.node))
            calls_sub = await self.bus.js.subscribe(
                self.names.calls_for_node(self.node), stream=self.names.calls_stream,
                durable=consumer.durable_name, cb=self._on_call, manual_ack=True,
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
            await self._stop_spawned()
            await done_sub.unsubscribe()
            raise Shutdown

    def stop(self) -> None:
        self._stopping.set()

    async def _on_reconnect(self) -> None:
        self.reconcile_soon()

    async def _release_waiting(self) -> None:
        """On a clean stop, hand back what has not started (redelivered at once to the next
        controller of this node); calls running on hosts stay claimed until ack wait."""
        for held in list(self.held.values()):
            if held.token:
                continue
            try:
                await held.nak()
            except Exception:
                pass

    # -- admission -----------------------------------------------------------------
    async def _on_call(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        missing = [h for h in _REQUIRED if not headers.get(h)]
        if missing or len(msg.data) > self.settings.max_call_bytes:
            await self._reject_malformed(msg, headers, f"missing headers {missing}" if missing
                                         else f"call of {len(msg.data)} bytes is too large")
            return
        key = str(FutureKey.of(headers))
        if headers[H.RUN] in self._cancelled:
            await self._fail_headers(headers, Cancelled(f"run {headers[H.RUN]} was cancelled"))
            await msg.ack()
            return
        denied = await self.access.check(headers)
        if denied is not None:
            self.stats["denied"] += 1
            await self._fail_headers(headers, denied)
            await msg.ack()
            return
        existing = self.held.get(key)
        if existing is not None:
            existing.msgs.append(msg)  # the same call again: acked together when it is done
            return
        priority = _int(headers.get(H.PRIORITY), 0)
        attempt = _int(headers.get(H.ATTEMPT), 1)
        redeliveries = msg.metadata.num_delivered - 1 if msg.metadata else 0
        if redeliveries > 0:  # a controller died holding it: it may have run already
            if await self._already_resolved(headers[H.RUN], headers[H.FUTURE]):
                await msg.ack()
                return
            if redeliveries >= self.settings.max_deliver:
                await self._dead_letter_msg(msg, headers, redeliveries + 1,
                                            f"delivered {redeliveries + 1} times without "
                                            "finishing (max_deliver)")
                return
            headers[H.ATTEMPT] = str(attempt + redeliveries)
        deps = [d for d in (headers.get(H.DEPS) or "").split(",") if d]
        held = Held(msgs=[msg], data=msg.data, headers=headers, run=headers[H.RUN],
                    future=headers[H.FUTURE], agent=headers[H.AGENT],
                    session=headers.get(H.SESSION, ""), priority=priority, deps=deps,
                    base_priority=priority, deliveries=redeliveries + 1,
                    deadline=_float(headers.get(H.DEADLINE)))
        held.priority = self._priority(held, self.view.snapshot)
        if headers.get(H.INSTANCE) in self.queues:
            held.pinned = headers[H.INSTANCE]  # migrated here for that instance
        self.held[key] = held
        self.stats["admitted"] += 1
        await self._admit(held)

    async def _admit(self, held: Held) -> None:
        """Guardrails, then the session's pin, dependencies and placement."""
        try:
            facts = await self.runs.get(held.run)
        except Exception as exc:  # NATS away: keep the call (claimed), decide again later
            self._admit_later(held, f"run facts: {exc}")
            return
        held.replay_of = facts.replay_of
        if self.guard is not None and await self._guardrails_stop(held, facts):
            return
        deps = held.deps
        if held.session and self._is_stateful(held.agent):
            pinned = await self._pin(held)
            node = self._node_of(pinned) if pinned else None
            if node is not None and node != self.node:
                await self._forward(held, node)  # the session lives on another node
                return
            held.pinned = pinned
        if not deps:
            await self._place_or_replay(held)
            return
        held.waiting = set(deps)
        on_resolved = functools.partial(self._dep_resolved, held)
        for dep in deps:
            await self.waiter.watch(held.run, dep, on_resolved)

    async def _on_cancel(self, msg: Msg) -> None:
        """A run was cancelled: its calls that have not started fail with `Cancelled` now
        (running ones are stopped by their host), and later ones are refused."""
        run = msg.subject.rsplit(".", 1)[1]
        now = time.monotonic()
        self._cancelled[run] = now
        for old in [r for r, at in self._cancelled.items() if now - at > 3600]:
            del self._cancelled[old]
        error = Cancelled(f"run {run} was cancelled")
        for queue in self.queues.values():
            for held in queue.remove_run(run):
                await self._fail(held, error)
        for agent, waiting in list(self.unplaced.items()):
            self.unplaced[agent] = [h for h in waiting if h.run != run]
        self.paused.pop(run, None)
        for held in [h for h in self.held.values() if h.run == run and not h.token]:
            await self._fail(held, error)  # waiting for dependencies, an instance, a resume

    # -- guardrails ----------------------------------------------------------------------
    async def _guardrails_stop(self, held: Held, facts: RunFacts) -> bool:
        """Check the call against its run's guardrails before it runs: True when one stopped
        it (failed, its run aborted, or paused until the run's `resume` signal)."""
        assert self.guard is not None
        try:
            limits = self.guard.limits(facts)
            held.guarded = bool(limits)
            breach = await self.guard.admit(facts, limits, held.future, held.agent,
                                            held.headers.get(H.METHOD, ""), held.session)
            if breach is None:
                held.paused = False
                return False
            still = held.paused and breach.limit.action == "pause"  # a recheck: said already
            error = None if still else await self._enforce(breach, facts, held.headers)
        except Exception as exc:  # Redis unreachable: nothing runs unchecked; try again
            self._admit_later(held, f"guardrails: {exc}")
            return True
        if error is None:
            held.paused = True
            self.paused.setdefault(held.run, []).append(held)
        else:
            await self._fail(held, error)
        return True

    def _admit_later(self, held: Held, why: str, delay: float = 2.0) -> None:
        """Admission could not decide (NATS or Redis away): keep the call claimed and try
        again, without spending one of its deliveries."""
        log.warning("call.admit_retry", run_id=held.run, future_id=held.future, reason=why)
        self._spawn(self._later(delay, held, self._admit))

    async def _later(self, delay: float, held: Held, step: Any) -> None:
        """`step(held)` after `delay`, if the call is still held here and not dispatched."""
        await asyncio.sleep(delay)
        if self.held.get(held.key) is held and not held.token:
            await step(held)

    def _recheck_paused(self) -> None:
        """Paused calls are checked again every few seconds: a `resume` this controller did
        not hear (it was reconnecting; it came while the call was being paused) still
        lets them go on."""
        paused, self.paused = self.paused, {}
        for helds in paused.values():
            for held in helds:
                if self.held.get(held.key) is held:
                    self._spawn(self._admit(held))

    async def _enforce(self, breach: Breach, facts: RunFacts, headers: dict[str, str],
                       quiet: bool = False) -> NalarError | None:
        """Act on a breach: the error that ends the call (`reject`; `abort` also ends the
        run), or None for `pause` (the run's journal says it waits for `resume`; `quiet`: a
        request asking again while paused, said already)."""
        lim = breach.limit
        if quiet and lim.action == "pause":
            return None
        self.stats["guardrail_stops"] += 1
        where = {"future": headers.get(H.FUTURE), "agent": headers.get(H.AGENT),
                 "method": headers.get(H.METHOD), "node": self.node}
        log.info("guardrail.breached", run_id=facts.run, guardrail=lim.name,
                 action=lim.action, value=breach.value, future_id=where["future"])
        if lim.action == "pause":
            await record(self.bus, facts.run, Event.PAUSED, {
                **breach.details(), **where, "signal": "resume",
                "message": f"{lim.describe()} paused the run: send its `resume` signal to "
                           "go on"}, acked=True, msg_id=f"{facts.run}.paused.{lim.name}")
            return None
        error = breach.error()
        await record(self.bus, facts.run, Event.GUARDRAIL,
                     {**breach.details(), **where, "message": error.message})
        if lim.action == "abort":
            await cancel_run(self.bus, facts.run, facts.session, facts.workflow, error,
                             self.executor_id)
        return error

    async def _on_resume(self, msg: Msg) -> None:
        """A paused run may go on: its paused calls are checked again (the limits that
        paused it no longer bind it) and continue."""
        run = msg.subject.rsplit(".", 1)[1]
        for held in self.paused.pop(run, []):
            if self.held.get(held.key) is held:
                self._spawn(self._admit(held))  # each on its own: one failing stops no other

    async def _on_guard(self, msg: Msg) -> None:
        """An agent host asks before an LLM request of a guarded run (and settles after):
        reply `{"ok": true, "held": ...}` or `{"ok": false, "action", "error"}`."""
        assert self.guard is not None
        try:
            body = Envelope.decode(msg.data, expect="guard").body
            model = str(body.get("model") or "")
            if "settle" in body:
                held_for = self._reservations.pop(str(body["settle"]), None)
                if held_for is not None:
                    await self.guard.settle(held_for[0], held_for[1],
                                            int(body["prompt_tokens"]),
                                            int(body["completion_tokens"]), bool(body["ok"]))
                reply: dict[str, Any] = {"ok": True}
            else:
                facts = await self.runs.get(str(body["run"]))
                breach, held = await self.guard.reserve(
                    facts, str(body.get("session") or ""), model, int(body["prompt_tokens"]),
                    int(body["max_tokens"]))
                if breach is None:
                    rid = ""
                    if held:  # settled by id: a host names a reservation, never counters
                        rid = uuid.uuid4().hex
                        self._reservations[rid] = (held, model, time.monotonic())
                    reply = {"ok": True, "reservation": rid}
                else:
                    headers = {H.FUTURE: str(body.get("future") or ""),
                               H.AGENT: str(body.get("agent") or ""),
                               H.METHOD: str(body.get("method") or "")}
                    error = await self._enforce(breach, facts, headers,
                                                quiet=bool(body.get("again")))
                    reply = {"ok": False, "action": breach.limit.action,
                             "error": error.to_wire() if error else None,
                             "details": breach.details()}
        except Exception as exc:
            log.warning("guardrails.request_failed", error=str(exc))
            reply = {"ok": False, "action": "unavailable", "error": None,
                     "details": {"reason": str(exc)[:300]}}
        if msg.reply:
            await self.bus.nc.publish(msg.reply, Envelope("guard_reply", reply).encode())

    def _is_stateful(self, agent: str) -> bool:
        return any(i.stateful for i in self.view.live_instances(agent))

    def _node_of(self, instance: str) -> str | None:
        info = next((i for i in self.view.live() if i.instance == instance), None)
        return info.node if info is not None and not info.draining else None

    async def _pin(self, held: Held) -> str | None:
        """The instance that serves this session of a stateful agent: the one already pinned
        while it lives, else the least-loaded one here, recorded with compare-and-set (a
        concurrent controller's pin wins). A session moves only when its instance is gone."""
        key = self.names.pin_key(held.agent, held.session)
        try:
            entry = await self._pins.get(key)
        except KeyNotFoundError:
            entry = None
        current = entry.value.decode() if entry is not None and entry.value else None
        if current and self._node_of(current) is not None:
            return current
        queue = self._choose(held)
        if queue is None:
            return None
        try:
            if entry is None:
                await self._pins.create(key, queue.info.instance.encode())
            else:
                await self._pins.update(key, queue.info.instance.encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            won = await self._pins.get(key)
            return won.value.decode() if won.value else None
        return queue.info.instance

    async def _already_resolved(self, run: str, future: str) -> bool:
        try:
            return await self.waiter.get(run, future) is not None
        except Exception:
            return False

    async def _reject_malformed(self, msg: Msg, headers: dict[str, str], why: str) -> None:
        """A call nobody can run: dead-lettered, its future (if it names one) fails at once,
        and the message is never delivered again."""
        self.stats["malformed"] += 1
        await dead_letter(self.bus, service=self.executor_id, subject=msg.subject,
                          data=msg.data, headers=headers, reason=f"malformed call: {why}",
                          stream=True)
        if headers.get(H.RUN) and headers.get(H.FUTURE):
            await self._fail_headers(headers, MalformedMessage(why))
        await msg.term()

    async def _dead_letter_msg(self, msg: Msg, headers: dict[str, str], deliveries: int,
                               reason: str) -> None:
        """A call that keeps failing to finish (its hosts die, its controllers die) goes to
        the dead-letter stream; its future stays open for `nalar dlq retry` (or fails with
        `nalar dlq discard`), and the run's journal says where it is."""
        self.stats["dead_lettered"] += 1
        dlq_id = await dead_letter(self.bus, service=self.executor_id, subject=msg.subject,
                                   data=msg.data, headers=headers, reason=reason,
                                   deliveries=deliveries, stream=True)
        if dlq_id is None:
            await msg.nak(delay=5)  # not stored: keep it, try again later
            return
        await record(self.bus, headers.get(H.RUN, ""), Event.DEAD_LETTERED, {
            "future": headers.get(H.FUTURE), "agent": headers.get(H.AGENT),
            "method": headers.get(H.METHOD), "reason": reason, "dlq_id": dlq_id,
            "deliveries": deliveries, "node": self.node})
        await msg.term()

    def _dep_resolved(self, held: Held, result: FutureResult) -> None:
        if held.key not in self.held:
            return
        held.waiting.discard(result.future)
        held.dep_results[result.future] = result
        if not result.ok:
            cause = result.error()
            self._spawn(self._fail(held, DependencyFailed(
                f"argument future {result.future} failed: {cause.message if cause else ''}",
                details={"dependency": result.future,
                         "cause": cause.to_wire() if cause else None})))
        elif not held.waiting:
            if held.replay_of:
                self._spawn(self._place_or_replay(held))
            else:
                self._place(held)

    # -- placement and dispatch ------------------------------------------------------
    async def _place_or_replay(self, held: Held) -> None:
        """Place the call and dispatch it now; in a replay run, answer it from the original
        run instead when it can be (overridden, asked the same, or a tool)."""
        if held.replay_of and held.agent != DRIVER_AGENT:
            try:
                facts = await self.runs.get(held.run)
                tools = {t for i in self.view.live_instances(held.agent) for t in i.tools}
                answer = await self.replays.answer(facts, held, tools)
            except Exception as exc:  # NATS away: keep the call, decide again later
                log.warning("replay.answer_retry", run_id=held.run, future_id=held.future,
                            error=str(exc))
                self._spawn(self._later(2.0, held, self._place_or_replay))
                return
            if answer.source == "diverged":
                assert answer.error is not None
                await self._fail(held, answer.error)
                return
            if answer.source != "live":
                await self._answer_from_replay(held, answer)
                return
        self._place(held)
        await self._flush_outbox()  # dispatch now, without waiting for the outbox task

    async def _answer_from_replay(self, held: Held, answer: Answer) -> None:
        if self.held.pop(held.key, None) is None:
            return
        executor = f"replay:{answer.source}"
        await publish_result(self.bus, held.headers, value=answer.value, error=answer.error,
                             executor=executor)
        # with its digest (and tool mark): a replay of this replay can answer it again
        await record(self.bus, held.run, Event.FUTURE_RESOLVED, {
            "future": held.future, "agent": held.agent, "method": held.headers.get(H.METHOD),
            "status": "ok" if answer.error is None else "error", "executor": executor,
            "replayed": answer.source, "replay_of": held.replay_of, "node": self.node,
            "args_digest": answer.digest, **({"kind": "tool"} if answer.tool else {})})
        await held.ack()

    def _place(self, held: Held) -> None:
        queue = self._choose(held)
        if queue is None:
            other = self._other_node(held.agent, held.session)
            if other is not None:
                self._spawn(self._forward(held, other))
            else:
                self.unplaced.setdefault(held.agent, []).append(held)
            return
        queue.push(held)
        self._dispatch(queue)

    def _choose(self, held: Held) -> InstanceQueue | None:
        """The instance for a call, decided here without waiting for anyone: the stateful
        pin; the session's route from the policy; else among the instances the policy allows,
        the one where the call is expected to finish first: its expected wait there, plus
        recomputing the session's KV context where it is not cached (a queue longer than
        `spill_queue` per slot gives up the cache). The baselines' placements (`sticky`,
        `creation`) stop after the pin."""
        candidates = [q for q in self.queues.values()
                      if q.info.agent == held.agent and not q.info.draining]
        if not candidates:
            return None
        if held.pinned:
            for q in candidates:
                if q.info.instance == held.pinned:
                    return q
        if self.settings.placement == "sticky":
            ordered = sorted(candidates, key=lambda q: q.info.instance)
            digest = hashlib.blake2b((held.session or held.run).encode(), digest_size=8)
            return ordered[int.from_bytes(digest.digest(), "big") % len(ordered)]
        if self.settings.placement == "creation":
            return min(candidates, key=lambda q: (q.load(), q.dispatched))
        snap = self.view.snapshot
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
        now = time.time()
        home = self._home(held, allowed, snap) if held.session else None
        if home is not None and \
                home.queued > self.settings.spill_queue * max(1, home.info.concurrency):
            home = None  # spill over: too long a queue to wait for the cache
        context = max((q.context.get(held.session, 0) for q in allowed), default=0) \
            if held.session else 0
        if home is not None and not context:
            return home  # the policy's word for a session not seen here: its size unknown

        def cost(q: InstanceQueue) -> tuple[float, float, int]:
            """Expected wait there, plus recomputing the session's KV context where it is
            not cached (a long call running ahead counts long: heavy-tailed run times)."""
            wait = 0.0 if q.free_slots > q.queued else q.work_s(now)
            recompute = 0.0 if q is home or not context else context / _prefill_rate(q)
            return wait + recompute, q.load(), q.dispatched

        return min(allowed, key=cost)

    @staticmethod
    def _home(held: Held, allowed: list[InstanceQueue],
              snap: PolicySnapshot | None) -> InstanceQueue | None:
        """The instance holding the session's KV cache: the one here that served it last,
        else the one the policy names (it served it on another node's word)."""
        best = max(allowed, key=lambda q: q.holds(held.session))
        if best.holds(held.session):
            return best
        preferred = snap.affinity.get(held.session, {}).get(held.agent) if snap else None
        return next((q for q in allowed if q.info.instance == preferred), None)

    def _steal(self, idle: InstanceQueue) -> None:
        """An instance has free slots and nothing queued while another instance of its agent
        here has a queue: take calls from the longest one (those not tied to it: a stateful
        pin, a policy route, or a session whose KV cache is there while its queue is short)."""
        if idle.info.stateful or idle.info.draining or self.settings.placement != "dynamic":
            return
        donors = [q for q in self.queues.values() if q is not idle and q.queued
                  and q.info.agent == idle.info.agent and not q.info.stateful
                  and q.free_slots <= 0]
        if not donors:
            return
        donor = max(donors, key=lambda q: q.queued)
        snap = self.view.snapshot
        spill = donor.queued > self.settings.spill_queue * max(1, donor.info.concurrency)
        budget = idle.free_slots

        def tied(h: Held) -> bool:
            nonlocal budget
            if budget <= 0 or h.pinned or (snap is not None and h.session and snap.sessions.get(
                    h.session, {}).get(h.agent) == donor.info.instance) or \
                    (h.session and donor.holds(h.session) and not spill):
                return True
            budget -= 1
            return False

        taken = donor.take(tied)
        for held in taken:
            idle.push(held)
        if taken:
            self.stats["stolen"] += len(taken)
            self._dispatch(idle)

    def _other_node(self, agent: str, session: str) -> str | None:
        node = self.view.choose_node(agent, session)
        return node if node and node != self.node and self.view.live_instances(agent, node) \
            else None

    def _dispatch(self, queue: InstanceQueue) -> None:
        while queue.free_slots > 0:
            held = queue.pop()
            if held is None:
                return
            self._dispatch_seq += 1
            held.token = f"{self.node}:{self._dispatch_seq}"
            held.dispatched_at = time.time()
            headers = held.headers
            if self._applied_rev > 0:
                headers = {**headers, H.POLICY_REV: str(self._applied_rev)}
            payload = Envelope("dispatch", {
                "call": held.data, "headers": headers, "instance": queue.info.instance,
                "deps": {f: {"data": r.data, "headers": r.headers}
                         for f, r in held.dep_results.items()},
                "dispatched_at": held.dispatched_at, "token": held.token,
                "guard": held.guarded, "replay_of": held.replay_of,
                "revisions": self._revisions(),
            }).encode()
            if len(payload) > self.bus.nc.max_payload - 1024:
                self._spawn(self._fail(held, InvalidInput(
                    f"call with its arguments is {len(payload)} bytes, over the message limit "
                    f"of {self.bus.nc.max_payload}", details={"limit": self.bus.nc.max_payload})))
                continue
            queue.inflight[held.key] = held
            queue.dispatched += 1
            self.stats["dispatched"] += 1
            self._outbox.append((self.names.exec(queue.info.host), payload, held))
            self._outbox_ready.set()

    def _revisions(self) -> dict[str, str]:
        """The authorization and guardrail files in force (each call's journal entry)."""
        out = {"access": self.access.policy.current().revision}
        if self.guard is not None:
            out["guardrails"] = self.guard.file.current().revision
        return out

    async def _on_done(self, msg: Msg) -> None:
        h = msg.headers or {}
        if not h.get(H.RUN) or not h.get(H.FUTURE) or not h.get(H.DISPATCH):
            await dead_letter(self.bus, service=self.executor_id, subject=msg.subject,
                              data=msg.data, headers=h, reason="done without run, future or "
                              "dispatch token")
            return
        key = f"{h.get(H.RUN)}.{h.get(H.FUTURE)}"
        held = self.held.get(key)
        if held is None or not held.token or h.get(H.DISPATCH) != held.token:
            return  # unknown, or a superseded copy finishing late: the current one still runs
        queue = self.queues.get(held.instance or "")
        if h.get(H.STATUS) == "retry":  # its retry policy wants another attempt, later
            self._retry_later(held, queue, _float(h.get(H.RETRY_AFTER)) or 0.0)
            return
        del self.held[key]
        if queue is not None:
            queue.inflight.pop(key, None)
            queue.finished(held, time.time() - held.dispatched_at, _int(h.get(H.TOKENS), None),
                           _int(h.get(H.CONTEXT_TOKENS), None))
        self.stats["completed"] += 1
        if queue is not None:
            self._refill(queue)
            await self._flush_outbox()
        await held.ack()

    def _refill(self, queue: InstanceQueue) -> None:
        """A slot of the instance came free: its next queued call, else one stolen."""
        self._dispatch(queue)
        if queue.free_slots > 0 and not queue.queued:
            self._steal(queue)

    @staticmethod
    def _next_attempt(held: Held) -> None:
        held.instance, held.token = None, ""
        held.headers = {**held.headers,
                        H.ATTEMPT: str(_int(held.headers.get(H.ATTEMPT), 1) + 1)}

    def _retry_later(self, held: Held, queue: InstanceQueue | None, delay: float) -> None:
        """Free the slot now; place the call again after `delay` as its next attempt (still
        held and claimed: the message is acked only when an attempt ends it)."""
        if queue is not None:
            queue.inflight.pop(held.key, None)
        self._next_attempt(held)
        self.stats["retried"] += 1
        self._spawn(self._place_later(held, delay))
        if queue is not None:
            self._refill(queue)
            self._outbox_ready.set()

    async def _forward(self, held: Held, node: str, instance: str | None = None) -> None:
        """Hand a call to another node: republish with a new message id, then ack ours. A
        migrated call names its instance there (`Nalar-Instance`)."""
        self.held.pop(held.key, None)
        hop = int(held.headers.get(H.HOP, "0")) + 1
        headers = {**held.headers, H.HOP: str(hop),
                   H.MSG_ID: f"{held.key}.c{hop}.a{held.headers.get(H.ATTEMPT, '1')}"}
        headers.pop(H.INSTANCE, None)
        if instance:
            headers[H.INSTANCE] = instance
        await self.bus.js.publish(self.names.call(node, held.agent), held.data, headers=headers)
        await held.ack()
        self.stats["forwarded"] += 1
        log.info("call.forwarded", run_id=held.run, future_id=held.future, to_node=node)

    # -- failure -------------------------------------------------------------------------
    async def _fail(self, held: Held, error: NalarError) -> None:
        if self.held.pop(held.key, None) is None:
            return
        await self._fail_headers(held.headers, error)
        await held.ack()

    async def _fail_headers(self, headers: dict[str, str], error: NalarError) -> None:
        self.stats["failed"] += 1
        run, fut = headers.get(H.RUN, ""), headers.get(H.FUTURE, "")
        log.info("call.failed", run_id=run, future_id=fut, code=error.error_code,
                 message=error.message)
        await publish_result(self.bus, headers, error=error, executor=self.executor_id)
        await record(self.bus, run, Event.FUTURE_RESOLVED, {
            "future": fut, "agent": headers.get(H.AGENT), "method": headers.get(H.METHOD),
            "status": "error", "executor": self.executor_id, "code": error.error_code})
        if fut == ROOT_FUTURE:
            await record(self.bus, run, Event.FINISHED,
                         {"status": "failed", "error": error.to_wire()}, acked=True,
                         msg_id=f"{run}.finished")

    # -- instances -------------------------------------------------------------------------
    async def _watch_instances(self) -> None:
        while True:
            await self.view.wait_changed()
            self._sync_instances()
            snap = self.view.snapshot
            if snap is not None and snap.revision != self._applied_rev:
                self._applied_rev = snap.revision
                await self._apply_snapshot(snap)

    async def _apply_snapshot(self, snap: PolicySnapshot) -> None:
        """A new policy acts at once on what waits here: session priorities reorder the
        queues; a migration or a changed session route moves the session's queued calls
        (same node: between queues; other node: republished) — never those of a stateful
        agent, never a call already running; provisioning starts and stops instances."""
        for queue in self.queues.values():
            if queue.reprioritize(lambda h: self._priority(h, snap)):
                self._dispatch(queue)
        for action in snap.migrations:
            if self._first_time(action) and action.get("src") in self.queues:
                await self._migrate(action["session"], action["agent"], action["dst"],
                                    src=action["src"], move_lease=True)
        routes = {(s_, a): i for s_, per in snap.sessions.items() for a, i in per.items()}
        for (session, agent), target in routes.items():
            if self._routes.get((session, agent)) != target:
                await self._migrate(session, agent, target)
        self._routes = routes
        releases = [a for a in snap.releases
                    if a.get("instance") in self.queues and self._first_time(a)]
        provisions = [a for a in snap.provisions
                      if a.get("node") == self.node and self._first_time(a)]
        if releases or provisions:
            self._spawn(self._provisioning(releases, provisions, snap))
        await self._flush_outbox()

    def _first_time(self, action: dict[str, str]) -> bool:
        """One-shot actions stay in a few snapshots; apply each once."""
        aid = action.get("id", "")
        if not aid or aid in self._done_actions:
            return False
        now = time.monotonic()
        self._done_actions[aid] = now
        for old in [k for k, at in self._done_actions.items() if now - at > 300]:
            del self._done_actions[old]
        return True

    def _priority(self, held: Held, snap: PolicySnapshot | None) -> int:
        boost = snap.priority(held.session, held.agent) if snap is not None and held.session \
            else None
        return max(held.base_priority, int(boost)) if boost is not None else held.base_priority

    async def _migrate(self, session: str, agent: str, target: str, *, src: str | None = None,
                       move_lease: bool = False) -> None:
        """Move the session's queued calls of `agent` (from `src`, or from every other queue
        here) to instance `target`; with `move_lease`, its state lease goes along."""
        dest = self.queues.get(target)
        node = None if dest is not None else self._node_of(target)
        if dest is None and node is None:
            return  # the target is gone: nothing to do
        moved: list[Held] = []
        for queue in self.queues.values():
            if queue is dest or queue.info.agent != agent or queue.info.stateful or \
                    (src is not None and queue.info.instance != src):
                continue
            moved += queue.take(lambda h: h.session != session)
        if moved and move_lease:
            await self._transfer_lease(session, agent, target)
        for held in moved:
            held.pinned = target
            self.stats["migrated"] += 1
            if dest is not None:
                dest.push(held)
            else:
                assert node is not None
                await self._forward(held, node, instance=target)
            await record(self.bus, held.run, Event.MIGRATED, {
                "future": held.future, "session": session, "agent": agent, "to": target,
                "from": src, "node": node or self.node, "policy_rev": self._applied_rev})
        if dest is not None and moved:
            self._dispatch(dest)
        if moved:
            log.info("session.migrated", session_id=session, agent=agent, to=target,
                     calls=len(moved))

    async def _transfer_lease(self, session: str, agent: str, target: str) -> None:
        """Hand the session's state lease to `target` (new epoch: a late write of the old
        owner is rejected) — unless a call of the session runs here now: it keeps the lease
        and releases it when it ends, and the moved calls take it after."""
        if self.store is None or not any(i.uses_state for i in self.view.live_instances(agent)):
            return  # no store, or an agent without managed state: no lease to move
        if any(h.session == session for q in self.queues.values() if q.info.agent == agent
               for h in q.inflight.values()):
            return
        try:
            epoch = await self.store.transfer(session, agent, target,
                                              self.settings.lease_transfer_ttl_ms)
            self.stats["lease_transfers"] += 1
            log.info("session.lease_moved", session_id=session, agent=agent, to=target,
                     epoch=epoch)
        except Exception as exc:  # the calls still move; the lease follows when they run
            log.warning("session.lease_move_failed", session_id=session, error=str(exc))

    # -- provisioning ----------------------------------------------------------------------
    async def _control(self, host: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await self.bus.nc.request(self.names.control(host),
                                              Envelope("control", body).encode(),
                                              timeout=self.settings.control_timeout_s)
            return dict(Envelope.decode(reply.data, expect="control_reply").body)
        except Exception as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}

    async def _provisioning(self, releases: list[dict[str, str]],
                            provisions: list[dict[str, str]], snap: PolicySnapshot) -> None:
        """Releases first: a host whose instance is released has a slot for the new one."""
        for action in releases:
            await self._release(action)
        assigned: set[tuple[str, str]] = set()  # (host, agent) started by this snapshot
        for action in provisions:
            await self._provision(action, snap, assigned)

    async def _provision(self, action: dict[str, str], snap: PolicySnapshot,
                         assigned: set[tuple[str, str]]) -> None:
        """Start an instance of the agent on a host of this node that has a free slot (first
        the hosts whose instance this snapshot released), not one already starting it for
        this snapshot (several provisions of one agent each get their own host)."""
        agent = action["agent"]
        mine = [i for i in self.view.live() if i.node == self.node]
        has_agent = {i.host for i in mine if i.agent == agent and not i.draining} | \
            {h for h, a in assigned if a == agent}
        freed = {i.host for i in mine if i.instance in {r.get("instance") for r in
                                                        snap.releases}}
        hosts = sorted({i.host for i in mine if i.host not in has_agent and
                        (i.host in freed or i.slots_free is None or i.slots_free > 0)},
                       key=lambda h: (h not in freed, h))
        for host in hosts:
            result = await self._control(host, {"op": "assign", "agent": agent})
            if result.get("ok"):
                assigned.add((host, agent))
                self.stats["provisioned"] += 1
                log.info("instance.provisioned", agent=agent, host=host,
                         status=result.get("status"))
                return
        if len(self._spawned) < self.settings.spawn_hosts:
            await self._spawn_host(agent)
            return
        log.warning("instance.provision_failed", agent=agent, node=self.node,
                    tried=hosts)

    async def _spawn_host(self, agent: str) -> None:
        """Start an agent host process for one instance of `agent` (with this process's
        environment: the same app and servers); it stops again when that instance is
        released."""
        self._spawn_seq += 1
        host = f"{self.node}-p{self._spawn_seq}-{os.getpid()}"
        env = {**os.environ, "NALAR_NODE_NAME": self.node, "NALAR_AGENT_HOST_HOST_ID": host,
               "NALAR_AGENT_HOST_AGENTS": agent, "NALAR_AGENT_HOST_SLOTS": "1",
               "NALAR_AGENT_HOST_DRIVERS": "false"}
        self._spawned[host] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nalar_agent_host", env=env,
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent)
        self.stats["provisioned"] += 1
        log.info("host.spawned", host=host, agent=agent, pid=self._spawned[host].pid)

    async def _stop_spawned(self, host: str | None = None) -> None:
        """SIGTERM spawned hosts (one, or all): each finishes what it runs, then exits."""
        for name in [host] if host else list(self._spawned):
            proc = self._spawned.pop(name, None)
            if proc is None or proc.returncode is not None:
                continue
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
            log.info("host.stopped", host=name)

    async def _release(self, action: dict[str, str]) -> None:
        queue = self.queues.get(action["instance"])
        if queue is None:
            return
        result = await self._control(queue.info.host, {"op": "release",
                                                       "instance": action["instance"]})
        if result.get("ok"):
            self.stats["released"] += 1
            log.info("instance.released", instance=action["instance"])
            if queue.info.host in self._spawned:  # its only instance: the process goes too
                self._spawn(self._stop_spawned(queue.info.host))
            # take nothing new there from now on; what is queued goes elsewhere
            queue.info = replace(queue.info, draining=True)
            self._requeue(queue)
            await self._flush_outbox()
        else:
            log.warning("instance.release_failed", instance=action["instance"],
                        error=result.get("error"))

    def _sync_instances(self) -> None:
        live = {i.instance: i for i in self.view.live() if i.node == self.node}
        for iid, info in live.items():
            q = self.queues.get(iid)
            if q is None:
                q = self.queues[iid] = InstanceQueue(info, edf=self.settings.placement == "dynamic")
                log.info("instance.joined", instance=iid, agent=info.agent)
                self._steal(q)
            else:
                restarted = (info.pid, info.started_at) != (q.info.pid, q.info.started_at)
                q.info = info
                if restarted and q.inflight:  # a new process under the same id: what the
                    lost = list(q.inflight.values())  # old one ran is gone with it
                    q.inflight.clear()
                    log.warning("instance.restarted", instance=iid, requeued=len(lost))
                    for held in lost:
                        self._run_again(held)
                if info.draining and q.queued:
                    self._requeue(q)
        for iid in [i for i in self.queues if i not in live]:
            self._instance_gone(self.queues.pop(iid))
        for agent in list(self.unplaced):
            waiting = self.unplaced.pop(agent)
            for held in waiting:
                self._place(held)

    def _requeue(self, queue: InstanceQueue) -> None:
        """The instance is draining: its queued calls go to another instance."""
        moved = queue.take(lambda h: False)
        for held in moved:
            held.instance = None
            self.stats["requeued"] += 1
            self._place(held)
        if moved:
            log.info("instance.draining_requeued", instance=queue.info.instance,
                     calls=len(moved))

    def _instance_gone(self, queue: InstanceQueue) -> None:
        """Its host stopped heartbeating: run its queued calls elsewhere now, and its
        in-flight ones as new attempts after a backoff — unless they have been delivered
        `max_deliver` times (a call that kills its hosts): those are dead-lettered."""
        queued, inflight = queue.drain()
        log.warning("instance.lost", instance=queue.info.instance,
                    requeued=len(queued) + len(inflight))
        self.stats["requeued"] += len(queued) + len(inflight)
        for held in queued:
            held.instance = None
            self._place(held)
        for held in inflight:
            self._run_again(held)

    def _run_again(self, held: Held) -> None:
        """A dispatched call that did not finish (its instance was lost, or its dispatch) may
        have run part-way: it runs again as the next attempt after a backoff — unless it has
        been delivered `max_deliver` times (a call that kills its hosts): then it is
        dead-lettered."""
        self._next_attempt(held)
        held.deliveries += 1
        if held.deliveries > self.settings.max_deliver:
            self._spawn(self._dead_letter_held(held))
        else:
            self._spawn(self._place_later(held, self._backoff(held.deliveries)))

    def _backoff(self, deliveries: int) -> float:
        base = self.settings.redelivery_backoff_s * 2.0 ** max(0, deliveries - 2)
        return float(min(self.settings.redelivery_backoff_max_s, base))

    async def _dead_letter_held(self, held: Held) -> None:
        if self.held.pop(held.key, None) is None:
            return
        first, rest = held.msgs[0], held.msgs[1:]
        await self._dead_letter_msg(first, held.headers, held.deliveries,
                                    f"its instance was lost {held.deliveries - 1} times while "
                                    "running it (max_deliver)")
        for m in rest:
            await m.ack()

    # -- periodic ------------------------------------------------------------------------
    async def _housekeeping_loop(self) -> None:
        interval = self.settings.housekeeping_interval_s
        last = {"progress": time.monotonic(), "recheck": time.monotonic()}
        while True:
            await asyncio.sleep(interval)
            try:
                await self._housekeeping(last)
            except Exception:
                log.exception("local_controller.housekeeping_failed")

    async def _housekeeping(self, last: dict[str, float]) -> None:
        self._sync_instances()
        now = time.time()
        await self._expire(now)
        if self._reconcile_all or time.monotonic() - last.get("reconcile", 0.0) > \
                self.settings.reconcile_after_s / 2:
            last["reconcile"] = time.monotonic()
            await self._reconcile(1.0 if self._reconcile_all else
                                  self.settings.reconcile_after_s)
        for agent, waiting in list(self.unplaced.items()):
            for held in list(waiting):
                if now - held.arrived > self.settings.no_instance_timeout_s:
                    waiting.remove(held)
                    await self._fail(held, NoInstance(
                        f"no instance of agent {agent!r} came up within "
                        f"{self.settings.no_instance_timeout_s:.0f}s",
                        details={"agent": agent, "node": self.node}))
            if not waiting:
                self.unplaced.pop(agent, None)
        if self.waiter.pending and time.monotonic() - last["recheck"] > \
                self.settings.recheck_interval_s:
            last["recheck"] = time.monotonic()
            await self.waiter.recheck()  # dependencies whose result we may have missed
        if time.monotonic() - last.get("paused", 0.0) > PAUSED_RECHECK_S:
            last["paused"] = time.monotonic()
            self._recheck_paused()
            stale = time.monotonic() - RESERVATION_TTL_S
            for rid in [r for r, v in self._reservations.items() if v[2] < stale]:
                del self._reservations[rid]  # never settled: its worst case stays counted
        if time.monotonic() - last["progress"] > self.bus.settings.call_ack_wait_s / 3:
            last["progress"] = time.monotonic()
            for held in list(self.held.values()):
                try:
                    await held.in_progress()  # keep the claim on calls we hold
                except Exception:
                    pass

    async def _expire(self, now: float) -> None:
        """Calls past their deadline that have not started fail with `Timeout` (running ones
        are stopped by their host, which knows the deadline too)."""
        late = [h for h in self.held.values() if h.deadline and h.deadline <= now and
                not h.token]
        for held in late:
            for queue in self.queues.values():
                queue.take(lambda h, key=held.key: h.key != key)
            if held.agent in self.unplaced:
                self.unplaced[held.agent] = [h for h in self.unplaced[held.agent]
                                             if h is not held]
            where = ("waiting for " + ",".join(sorted(held.waiting)) if held.waiting
                     else "queued")
            self.stats["timed_out"] += 1
            await self._fail(held, Timeout(
                f"call {held.agent}.{held.headers.get(H.METHOD)} passed its deadline while "
                f"{where} on node {self.node}", details={
                    "future": held.future, "stuck": where, "node": self.node,
                    "deadline": held.deadline}))

    def reconcile_soon(self) -> None:
        """After a reconnect: dispatches and `done`s sent meanwhile may be lost."""
        self._reconcile_all = True

    async def _reconcile(self, older_than: float) -> None:
        """Dispatched calls not reported done for `older_than` s: those whose future is
        stored are done (the `done` was lost); those their host says it is not running (the
        dispatch was lost) are dispatched again. A host that does not answer is left to its
        heartbeat: if it is gone, its calls move when its instance expires."""
        self._reconcile_all = False
        now = time.time()
        stale = [h for h in self.held.values()
                 if h.token and now - h.dispatched_at > older_than]
        if not stale:
            return
        stale = await self._finish_resolved(stale)
        by_host: dict[str, list[Held]] = {}
        for held in stale:
            queue = self.queues.get(held.instance or "")
            if queue is not None:
                by_host.setdefault(queue.info.host, []).append(held)
        lost: list[Held] = []
        for host, calls in by_host.items():
            reply = await self._control(host, {"op": "running",
                                               "tokens": [h.token for h in calls]})
            if not reply.get("ok"):
                continue
            running = set(reply.get("running") or ())
            lost += [h for h in calls if h.token not in running]
        for held in await self._finish_resolved(lost):
            if held.key not in self.held or not held.token:
                continue
            queue = self.queues.get(held.instance or "")
            if queue is not None:
                queue.inflight.pop(held.key, None)
            log.warning("dispatch.lost", run_id=held.run, future_id=held.future,
                        instance=held.instance)
            self.stats["reconciled"] += 1
            self._run_again(held)
        await self._flush_outbox()

    async def _finish_resolved(self, calls: list[Held]) -> list[Held]:
        """Complete the calls whose future is stored; return the others."""
        if not calls:
            return []
        subjects = {self.names.future(h.run, h.future): h for h in calls}
        try:
            found = await self.bus.multi_last(self.names.futures_stream, list(subjects))
        except Exception as exc:
            log.warning("reconcile.lookup_failed", error=str(exc))
            return []
        for subject in found:
            held = subjects[subject]
            if self.held.get(held.key) is not held:
                continue
            del self.held[held.key]
            queue = self.queues.get(held.instance or "")
            if queue is not None:
                queue.inflight.pop(held.key, None)
                self._refill(queue)
            self.stats["reconciled"] += 1
            await held.ack()
        return [h for s, h in subjects.items() if s not in found]

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.telemetry_interval_s)
            try:
                await self.bus.nc.publish(self.names.telemetry(self.node),
                                          Envelope("telemetry", self.telemetry()).encode())
            except Exception as exc:
                log.warning("telemetry.publish_failed", error=str(exc))

    def telemetry(self) -> dict[str, Any]:
        now = time.time()
        instances = {}
        for iid, q in self.queues.items():
            p50, p99 = q.percentiles()
            oldest = q.oldest()
            instances[iid] = {
                "agent": q.info.agent, "host": q.info.host, "queue": q.queued,
                "queued_tokens": q.queued_tokens(), "queued_work_s": round(q.work_s(now), 4),
                "inflight": len(q.inflight), "concurrency": q.info.concurrency,
                "service_s": round(q.service_s, 4), "p50_s": p50, "p99_s": p99,
                "sessions": q.sessions(),
                "oldest_age_s": now - oldest.arrived if oldest else 0.0,
                "oldest_session": oldest.session if oldest else None,
                "queued_sessions": q.queued_sessions(), "waiting": q.waiting(now),
                "recent_sessions": [[k, round(v, 3)] for k, v in
                                    list(q.recent.items())[-self.RECENT_REPORTED:]],
                "engine": q.info.engine,
            }
        return {"node": self.node, "ts": now, "instances": instances,
                "held": len(self.held), "unplaced": sum(len(v) for v in self.unplaced.values()),
                "waiting_deps": sum(1 for h in self.held.values() if h.waiting),
                "spawn_capacity": self.settings.spawn_hosts - len(self._spawned),
                "stats": dict(self.stats)}

    # -- helpers -----------------------------------------------------------------------------
    async def _outbox_loop(self) -> None:
        """Publish dispatches queued by synchronous placement code, in order, in batches."""
        while True:
            await self._outbox_ready.wait()
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        self._outbox_ready.clear()
        reply = self.names.done(self.node)
        batch, self._outbox = self._outbox, []
        for subject, payload, held in batch:
            try:
                await self.bus.nc.publish(subject, payload, reply=reply)
            except Exception as exc:  # not sent: the call goes back to be placed again
                log.warning("dispatch.publish_failed", run_id=held.run, future_id=held.future,
                            error=str(exc))
                queue = self.queues.get(held.instance or "")
                if queue is not None:
                    queue.inflight.pop(held.key, None)
                held.instance, held.token = None, ""
                self._spawn(self._place_later(held))

    async def _place_later(self, held: Held, delay: float = 1.0) -> None:
        await asyncio.sleep(delay)
        if held.key in self.held:
            self._place(held)
            await self._flush_outbox()

    def _spawn(self, coro: Any) -> None:
        assert self._tg is not None
        self._tg.create_task(self._guarded(coro))

    @staticmethod
    async def _guarded(coro: Any) -> None:
        try:
            await coro
        except Exception:
            log.exception("local_controller.task_failed")


__all__ = ["LocalController"]
