"""AgentHost: hosts one instance of each agent of an app (and the workflow drivers), runs what
its local controller dispatches, publishes results to NALAR_FUTURES and heartbeats into KV.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from nalar.app import App, load_app
from nalar.context import CallContext
from nalar.engines import Engine, SimulatedEngine
from nalar.execution import as_error, context_for, invoke, lookup, resolve_args
from nalar.guard import GuardClient
from nalar.once import run_once
from nalar.registry import MethodSpec
from nalar.replay import RecordedLLM
from nalar.runtime import Runtime
from nalar.signals import Suspend
from nalar_common.bus import Bus
from nalar_common.calls import CallSpec, publish_result, resume_driver
from nalar_common.cluster import InstanceInfo
from nalar_common.digest import args_digest
from nalar_common.dlq import dead_letter
from nalar_common.envelope import Envelope
from nalar_common.errors import (
    Cancelled,
    MalformedMessage,
    NalarError,
    NotFound,
    ReplayDiverged,
    Timeout,
)
from nalar_common.journal import Event, deadline_error, record
from nalar_common.ledger import Ledger
from nalar_common.logging import get_logger
from nalar_common.process import Shutdown
from nalar_common.state import SessionStore
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nats.aio.msg import Msg

from nalar_agent_host.sessions import SessionStates
from nalar_agent_host.settings import AgentHostSettings

log = get_logger(__name__)
MAX_RECORDED_TEXT = 256 * 1024  # longer LLM answers are journaled without their text


@dataclass
class Instance:
    info: InstanceInfo
    target: Any  # the agent object, or None for the driver pseudo-agent
    inflight: int = 0
    releasing: bool = False  # provisioning stops it: it finishes its calls, takes no new ones


class AgentHost:
    def __init__(self, bus: Bus, node: str, settings: AgentHostSettings,
                 app: App | None = None, store: SessionStore | None = None,
                 engine: Engine | None = None) -> None:
        self.bus, self.node, self.settings = bus, node, settings
        self.names = bus.names
        self.host_id = settings.host_id
        self.app = app or load_app(settings.app)
        self.engine = engine if engine is not None else SimulatedEngine()
        self.runtime = Runtime(bus, engine=self.engine)
        # sync agent methods and sync drivers get separate pools, each as large as what may
        # run at once: a driver blocked on `value()` must never hold the thread its call needs
        self.pool = ThreadPoolExecutor(max_workers=max(settings.threads, self._max_agent_calls()),
                                       thread_name_prefix="nalar-agent")
        self.driver_pool = ThreadPoolExecutor(max_workers=max(1, settings.driver_concurrency),
                                              thread_name_prefix="nalar-driver")
        self.instances: dict[str, Instance] = {}
        self.retired: dict[str, Instance] = {}  # released; still runs a late dispatch
        self._changing: set[str] = set()  # agents whose new instance is starting
        self._kv: Any = None
        self.store = store
        self.states = SessionStates(store, lease_ttl_ms=settings.state_lease_ttl_ms,
                                    wait_s=settings.state_wait_s) if store else None
        self.ledger = Ledger(store.r, self.names, ttl_s=settings.ledger_ttl_s,
                             claim_ttl_ms=settings.ledger_claim_ttl_ms) if store else None
        self._stopping = asyncio.Event()
        self.draining = False
        self._running: dict[str, dict[str, tuple[asyncio.Future[Any], threading.Event]]] = {}
        self._cancelled: dict[str, float] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._tokens: set[str] = set()  # dispatch tokens of the calls running here
        self._tg: asyncio.TaskGroup | None = None
        self.stats = {"executed": 0, "failed": 0, "duplicates": 0, "retried": 0}

    def _max_agent_calls(self) -> int:
        return sum(spec.concurrency for spec in self.app.agents.values())

    def _make_instances(self) -> None:
        wanted = {a.strip() for a in self.settings.agents.split(",") if a.strip()}
        unknown = wanted - set(self.app.agents)
        if unknown:
            raise NotFound(f"agents {sorted(unknown)} are not in the app at {self.app.path}")
        for name in self.app.agents:
            if not wanted or name in wanted:
                self._add_instance(name)
        if self.settings.drivers and self.app.workflows:
            now = time.time()
            info = InstanceInfo(instance=f"{self.host_id}.{DRIVER_AGENT}", host=self.host_id,
                                node=self.node, agent=DRIVER_AGENT,
                                concurrency=self.settings.driver_concurrency, pid=os.getpid(),
                                started_at=now, ts=now)
            self.instances[info.instance] = Instance(info, None)

    def _add_instance(self, agent: str) -> Instance:
        spec, now = self.app.agents[agent], time.time()
        info = InstanceInfo(instance=f"{self.host_id}.{agent}", host=self.host_id,
                            node=self.node, agent=agent, concurrency=spec.concurrency,
                            pid=os.getpid(), started_at=now, ts=now, stateful=spec.stateful,
                            uses_state=spec.uses_state,
                            min_instances=spec.min_instances, max_instances=spec.max_instances,
                            startup_s=self.settings.engine_startup_s,
                            tools=sorted(m.name for m in spec.methods.values() if m.tool))
        inst = self.instances[info.instance] = Instance(info, spec.cls())
        self.retired.pop(info.instance, None)
        return inst

    def agent_instances(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.info.agent != DRIVER_AGENT]

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        await self.bus.ensure_topology()
        self._make_instances()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self.runtime.run())
                await self.runtime.wait_ready()
                sub = await self.bus.nc.subscribe(self.names.exec(self.host_id), cb=self._on_exec)
                await self.bus.nc.subscribe(self.names.all_cancels, cb=self._on_cancel)
                await self.bus.nc.subscribe(self.names.control(self.host_id),
                                            cb=self._on_control)
                kv = self._kv = await self.bus.kv(self.names.instances_bucket)
                await self._heartbeat(kv)
                tg.create_task(self._heartbeat_loop(kv))
                log.info("agent_host.started", host=self.host_id, node=self.node,
                         agents=sorted(i.info.agent for i in self.instances.values()))
                await self._stopping.wait()
                await self._drain(sub, kv)
                raise Shutdown
        except* Shutdown:
            pass
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.driver_pool.shutdown(wait=False, cancel_futures=True)
            await self.bus.close()  # drain NATS (results in flight go out), then Redis
            if self.store is not None:
                await self.store.close()
            log.info("agent_host.stopped", host=self.host_id)

    def stop(self) -> None:
        self._stopping.set()

    async def _drain(self, sub: Any, kv: Any) -> None:
        """Stop intake: announce draining, finish what runs, then leave the instance table.
        Best effort on the bus: NATS may already be gone when the whole machine stops."""
        self.draining = True
        try:
            await self._heartbeat(kv)
            await sub.unsubscribe()
        except Exception as exc:
            log.warning("agent_host.drain_announce_failed", error=str(exc))
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self.settings.grace_s)
        try:
            for key in self.instances:
                await kv.delete(key)
        except Exception as exc:
            log.warning("agent_host.deregister_failed", error=str(exc))

    async def _heartbeat(self, kv: Any) -> None:
        now = time.time()
        scrape = getattr(self.engine, "scrape", None)
        if scrape is not None and getattr(self.engine, "scrape_metrics", False):
            await scrape()
        engine_stats = self.engine.stats()
        slots = self.free_slots()
        for key, inst in self.instances.items():
            inst.info = replace(inst.info, ts=now, inflight=inst.inflight,
                                draining=self.draining or inst.releasing, engine=engine_stats,
                                slots_free=slots)
            await kv.put(key, inst.info.encode())

    async def _heartbeat_loop(self, kv: Any) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self._heartbeat(kv)
            except Exception as exc:
                log.warning("agent_host.heartbeat_failed", error=str(exc))

    # -- execution -------------------------------------------------------------------------
    async def _on_exec(self, msg: Msg) -> None:
        assert self._tg is not None
        try:
            body = Envelope.decode(msg.data, expect="dispatch").body
            dict(body["headers"])
        except Exception as exc:  # not from a local controller: nothing to answer
            await dead_letter(self.bus, service=f"agent-host:{self.host_id}",
                              subject=msg.subject, data=msg.data, headers=msg.headers,
                              reason=f"malformed dispatch: {exc}")
            return
        token = str(body.get("token") or "")
        self._tokens.add(token)  # at once: a controller may ask before the task starts
        task = self._tg.create_task(self._execute(msg, body, token))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _execute(self, msg: Msg, body: dict[str, Any], token: str) -> None:
        """Never raises: an error here would stop the host and every call it runs."""
        try:
            await self._run_call(msg, body)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("agent_host.execute_failed")
        finally:
            self._tokens.discard(token)

    async def _run_call(self, msg: Msg, body: dict[str, Any]) -> None:
        started = time.time()
        headers: dict[str, str] = dict(body["headers"])
        token = str(body.get("token") or "")
        try:
            call = CallSpec.decode(body["call"])
        except MalformedMessage as exc:
            await self._reject(msg, headers, token, exc)
            return
        inst = self.instances.get(body.get("instance", "")) or \
            self.retired.get(body.get("instance", ""))
        value: Any = None
        error: NalarError | None = None
        ctx: CallContext | None = None
        is_driver = call.agent == DRIVER_AGENT
        audit: dict[str, Any] = {"attempt": int(headers.get(H.ATTEMPT) or call.attempt),
                                 "node": self.node, "host": self.host_id,
                                 "policy": {"placement": headers.get(H.POLICY_REV),
                                            **(body.get("revisions") or {})}}
        if inst is not None:
            inst.inflight += 1
        try:
            if inst is None:
                raise NotFound(f"instance {body.get('instance')!r} is not on host {self.host_id}")
            pool = self.driver_pool if is_driver else self.pool
            if is_driver:
                wf = self.app.workflows.get(call.method)
                if wf is None:
                    raise NotFound(f"workflow {call.method!r} is not in the app")
                fn = wf.fn
                await record(self.bus, call.run, Event.STARTED, {
                    "workflow": call.method, "host": self.host_id, "node": self.node,
                    "attempt": int(headers.get(H.ATTEMPT) or call.attempt)}, acked=True)
            else:
                fn = lookup(inst.target, call.method, call.agent)
            args, kwargs = resolve_args(call, body.get("deps") or {})
            audit["args_digest"] = args_digest(args, kwargs)
            attempt = int(headers.get(H.ATTEMPT) or call.attempt)
            ctx = context_for(self.runtime, call, attempt)
            ctx.on_token = self._token_sink(call)
            ctx.on_llm = self._llm_sink(call)
            if body.get("replay_of"):  # a replay re-runs this call: same LLM asks are served
                ctx.replay = RecordedLLM(self.bus, str(body["replay_of"]), call.future)
            ctx.ledger, ctx.instance = self.ledger, inst.info.instance
            if body.get("guard"):
                ctx.guard = GuardClient(self.bus, self.node, run=call.run, future=call.future,
                                        session=call.session, agent=call.agent,
                                        method=call.method)
            spec = None if is_driver else self.app.agents.get(call.agent)
            mspec = spec.methods.get(call.method) if spec is not None else None
            if mspec is not None and mspec.tool:
                audit["kind"] = "tool"
                if body.get("replay_of"):  # its controller could not tell: a replay never
                    raise ReplayDiverged(   # reaches outside
                        f"replay reached tool {call.agent}.{call.method} (future "
                        f"{call.future}), which it may not run: override future "
                        f"{call.future} to give it a result",
                        details={"future": call.future, "replay_of": body["replay_of"]})
            limit = _time_left(mspec.timeout if mspec is not None else None, call.deadline)
            run = self._runner(call, ctx, mspec,
                               lambda: invoke(fn, args, kwargs, ctx, pool, limit))
            if spec is not None and spec.uses_state and call.session and self.states:
                owner = f"{inst.info.instance}/{call.run}.{call.future}.a{attempt}"
                async with self.states.hold(call.session, call.agent, owner,
                                            inst.info.instance) as (state, lease):
                    ctx.state = state
                    value = await run
                    await self.states.commit(state, lease, op_id=call.key)
            else:
                value = await run
        except Suspend as suspend:
            await self._suspend(call, headers, token, msg, suspend)
            return
        except Exception as exc:
            error = as_error(exc, call)
        finally:
            if inst is not None:
                inst.inflight -= 1
        if isinstance(error, Timeout):
            error = await self._past_deadline(call, inst, error)
        if error is not None and not is_driver and ctx is not None and msg.reply and \
                await self._retry(call, headers, token, msg.reply, ctx, error):
            return
        timings = {"created": call.created_at, "dispatched": body.get("dispatched_at", 0.0),
                   "started": started, "finished": time.time()}
        executor = inst.info.instance if inst else self.host_id
        published = await self._publish_result(headers, value, error, executor, timings,
                                               ctx.usage if ctx is not None else None)
        self.stats["executed"] += 1
        if error is not None:
            self.stats["failed"] += 1
            log.info("call.failed", run_id=call.run, future_id=call.future, agent=call.agent,
                     method=call.method, code=error.error_code, message=error.message[:500])
        if not published:  # an earlier attempt resolved it: this result is dropped
            self.stats["duplicates"] += 1
            await record(self.bus, call.run, Event.DUPLICATE, {
                "future": call.future, "attempt": int(headers.get(H.ATTEMPT) or 1),
                "executor": executor})
        await record(self.bus, call.run, Event.FUTURE_RESOLVED, {
            "future": call.future, "agent": call.agent, "method": call.method,
            "status": "ok" if error is None else "error", "executor": executor,
            "timings": timings, **audit, "usage": _usage_summary(ctx),
            **({"code": error.error_code} if error is not None else {})})
        if is_driver:
            await self._record_finished(call.run, error if published else None, published)
        if msg.reply:
            await self._done(msg.reply, headers, token, executor,
                             "ok" if error is None else "error",
                             ctx.usage if ctx is not None else None)

    def _runner(self, call: CallSpec, ctx: CallContext, mspec: MethodSpec | None,
                make: Any) -> Any:
        """The call as it runs here: cancellable, and once only if it is a tool with side
        effects (`idempotent=False`: its result goes to the ledger, a retry replays it)."""
        if mspec is None or mspec.idempotent or self.ledger is None:
            return self._cancellable(call, ctx, make())
        return run_once(ctx, f"{call.agent}.{call.method}",
                        lambda: self._cancellable(call, ctx, make()))

    async def _retry(self, call: CallSpec, headers: dict[str, str], token: str, reply: str,
                     ctx: CallContext, error: NalarError) -> bool:
        """Apply the method's retry policy: if `error` is worth another attempt, publish no
        result; the local controller runs the call again after the backoff."""
        spec = self.app.agents.get(call.agent)
        mspec = spec.methods.get(call.method) if spec is not None else None
        if mspec is None or call.run in self._cancelled:
            return False
        delay = mspec.retry.delay(ctx.attempt, error)
        deadline = call.deadline
        if delay is None or (deadline is not None and time.time() + delay >= deadline):
            return False
        self.stats["retried"] += 1
        log.info("call.retrying", run_id=call.run, future_id=call.future, agent=call.agent,
                 method=call.method, attempt=ctx.attempt, code=error.error_code,
                 delay=round(delay, 3))
        await record(self.bus, call.run, Event.RETRYING, {
            "future": call.future, "agent": call.agent, "method": call.method,
            "attempt": ctx.attempt, "delay": delay, "error": error.to_wire()})
        await self._done(reply, headers, token, ctx.instance, "retry", ctx.usage,
                         retry_after=delay)
        return True

    async def _past_deadline(self, call: CallSpec, inst: Instance | None,
                             error: NalarError) -> NalarError:
        """A call cut short by its deadline (not its method's timeout) says so; a driver
        says where its run was stuck."""
        deadline = call.deadline
        if deadline is None or time.time() < deadline - 0.05:
            return error
        if call.agent == DRIVER_AGENT:
            try:
                return await deadline_error(self.bus, call.run, deadline)
            except Exception:
                return error
        where = inst.info.instance if inst else self.host_id
        return Timeout(f"{call.agent}.{call.method} passed its deadline while running on "
                       f"{where}", details={**error.details, "deadline": deadline,
                                            "stuck": "running", "instance": where})

    async def _cancellable(self, call: CallSpec, ctx: CallContext, coro: Any) -> Any:
        """Run user code so that cancelling its run stops it: an async method is cancelled,
        a sync one sees `nalar.cancelled()`; either way its future resolves `Cancelled`."""
        if call.run in self._cancelled:
            coro.close()
            raise Cancelled(f"run {call.run} was cancelled")
        ctx.cancelled = threading.Event()
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)  # awaited right here
        running = self._running.setdefault(call.run, {})
        running[call.future] = (task, ctx.cancelled)
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled() and call.run in self._cancelled:
                raise Cancelled(f"run {call.run} was cancelled") from None
            raise
        finally:
            if not task.done():
                task.cancel()
            running.pop(call.future, None)
            if not running:
                self._running.pop(call.run, None)

    async def _on_cancel(self, msg: Msg) -> None:
        run = msg.subject.rsplit(".", 1)[1]
        now = time.monotonic()
        self._cancelled[run] = now
        for old in [r for r, at in self._cancelled.items() if now - at > 3600]:
            del self._cancelled[old]
        for task, flag in list(self._running.get(run, {}).values()):
            flag.set()
            task.cancel()
        log.info("run.cancelled_here", run_id=run)

    async def _suspend(self, call: CallSpec, headers: dict[str, str], token: str, msg: Msg,
                       suspend: Suspend) -> None:
        """The driver waits for a signal: record `waiting`, free the slot, publish no result.
        If the signal came meanwhile (its sender saw the run still running), resume now."""
        fut = suspend.future
        await record(self.bus, call.run, Event.WAITING, {
            "signal": fut.method, "future": fut.future, "host": self.host_id}, acked=True)
        log.info("run.waiting", run_id=call.run, signal=fut.method)
        if await self.runtime.waiter.get(call.run, fut.future) is not None:
            node = self.runtime.view.choose_node(DRIVER_AGENT, call.session) or self.node
            await resume_driver(self.bus, call.run, node)
        if msg.reply:
            await self._done(msg.reply, headers, token, self.host_id, "waiting")

    def _llm_sink(self, call: CallSpec) -> Any:
        """Each LLM request of a call becomes an `llm` event of its run: the request's digest,
        its usage and the answer (what a replay serves instead of asking again)."""
        assert self._tg is not None
        tg = self._tg

        def sink(n: int, request_digest: str, completion: Any) -> None:
            text = completion.text if len(completion.text) <= MAX_RECORDED_TEXT else None
            tg.create_task(self._record_quietly(call.run, Event.LLM, {
                "future": call.future, "n": n, "digest": request_digest,
                "model": completion.model, "engine": completion.engine,
                **completion.usage(), "text": text, "truncated": text is None}))

        return sink

    async def _record_quietly(self, run: str, event: str, body: dict[str, Any]) -> None:
        try:
            await record(self.bus, run, event, body)
        except Exception as exc:
            log.warning("journal.publish_failed", run_id=run, kind=event, error=str(exc))

    def _token_sink(self, call: CallSpec) -> Any:
        """Streamed LLM text becomes `token` events of the run (SSE shows them live)."""
        assert self._tg is not None
        tg = self._tg

        def sink(piece: str) -> None:
            tg.create_task(self._record_quietly(call.run, Event.TOKEN, {
                "future": call.future, "agent": call.agent, "text": piece}))

        return sink

    async def _publish_result(self, headers: dict[str, str], value: Any,
                              error: NalarError | None, executor: str,
                              timings: dict[str, float],
                              usage: dict[str, Any] | None = None) -> bool:
        """Resolve the future, retrying while the bus is unavailable: the write is idempotent
        (message id plus write-once subject), and a call must not finish without its result."""
        delay = 0.1
        while True:
            try:
                return await publish_result(self.bus, headers, value=value, error=error,
                                            executor=executor, timings=timings, usage=usage)
            except Exception as exc:
                log.warning("result.publish_retry", run_id=headers.get(H.RUN),
                            future_id=headers.get(H.FUTURE), error=str(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _record_finished(self, run: str, error: NalarError | None,
                               published: bool) -> None:
        """The journal's `finished` event, once per run, from the result that was stored
        (which is an earlier attempt's when this one's was a duplicate)."""
        outcome: dict[str, Any] = {"status": "succeeded"}
        if published:
            if error is not None:
                outcome = {"status": "failed", "error": error.to_wire()}
        else:
            stored = await self.runtime.waiter.get(run, ROOT_FUTURE)
            err = stored.error() if stored is not None else None
            if err is not None:
                outcome = {"status": "failed", "error": err.to_wire()}
        await record(self.bus, run, Event.FINISHED, outcome, acked=True,
                     msg_id=f"{run}.finished")

    async def _done(self, reply: str, headers: dict[str, str], token: str, executor: str,
                    status: str, usage: dict[str, Any] | None = None,
                    retry_after: float | None = None) -> None:
        """Tell the local controller the call is over, so it acks it and frees the slot; the
        tokens it used feed the controller's work estimates and migration costs."""
        out = {H.RUN: headers.get(H.RUN, ""), H.FUTURE: headers.get(H.FUTURE, ""),
               H.INSTANCE: executor, H.STATUS: status, H.DISPATCH: token}
        if retry_after is not None:
            out[H.RETRY_AFTER] = f"{retry_after:.3f}"
        if usage and usage.get("llm"):
            last = usage["llm"][-1]
            out[H.TOKENS] = str(int(usage.get("prompt_tokens", 0))
                                + int(usage.get("completion_tokens", 0)))
            out[H.CONTEXT_TOKENS] = str(int(last.get("prompt_tokens", 0))
                                        + int(last.get("completion_tokens", 0)))
        await self.bus.nc.publish(reply, b"", headers=out)

    # -- provisioning ----------------------------------------------------------------------
    async def _on_control(self, msg: Msg) -> None:
        """`{"op": "assign", "agent": A}` starts an instance of A here (after the engine's
        start-up time); `{"op": "release", "instance": I}` stops one: it finishes what it
        runs, takes nothing new, then leaves the instance table. Replies with what it did."""
        try:
            body = Envelope.decode(msg.data, expect="control").body
            op = body.get("op")
            if op == "assign":
                result = self._assign(str(body.get("agent", "")))
            elif op == "release":
                result = self._release(str(body.get("instance", "")))
            elif op == "running":  # a controller checks calls it has not heard back about
                asked = body.get("tokens") or []
                result = {"ok": True, "running": [t for t in asked if t in self._tokens]}
            else:
                result = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as exc:
            result = {"ok": False, "error": str(exc)}
            await dead_letter(self.bus, service=f"agent-host:{self.host_id}",
                              subject=msg.subject, data=msg.data, headers=msg.headers,
                              reason=f"malformed control message: {exc}")
        if "running" not in result:
            log.info("agent_host.control", host=self.host_id,
                     **{k: str(v) for k, v in result.items()})
        if msg.reply:
            await self.bus.nc.publish(msg.reply, Envelope("control_reply", result).encode())

    def free_slots(self) -> int | None:
        if self.settings.slots <= 0:
            return None
        busy = [i for i in self.agent_instances() if not i.releasing]
        return self.settings.slots - len(busy) - len(self._changing)

    def _assign(self, agent: str) -> dict[str, Any]:
        assert self._tg is not None
        if agent not in self.app.agents:
            return {"ok": False, "error": f"agent {agent!r} is not in the app"}
        current = self.instances.get(f"{self.host_id}.{agent}")
        if (current is not None and not current.releasing) or agent in self._changing:
            return {"ok": True, "agent": agent, "status": "already here"}
        slots = self.free_slots()
        if slots is not None and slots <= 0:
            return {"ok": False, "error": f"host {self.host_id} has no free slot"}
        self._changing.add(agent)
        self._tg.create_task(self._start_instance(agent))
        return {"ok": True, "agent": agent, "status": "starting",
                "startup_s": self.settings.engine_startup_s}

    async def _start_instance(self, agent: str) -> None:
        try:
            await asyncio.sleep(self.settings.engine_startup_s)  # the engine loads its model
            current = self.instances.get(f"{self.host_id}.{agent}")
            if current is not None:
                current.releasing = False  # released meanwhile: it serves again
            else:
                self._add_instance(agent)
            await self._heartbeat(self._kv)
            log.info("agent_host.instance_started", host=self.host_id, agent=agent)
        finally:
            self._changing.discard(agent)

    def _release(self, instance: str) -> dict[str, Any]:
        assert self._tg is not None
        inst = self.instances.get(instance)
        if inst is None or inst.info.agent == DRIVER_AGENT:
            return {"ok": False, "error": f"no agent instance {instance!r} on {self.host_id}"}
        if inst.releasing:
            return {"ok": True, "instance": instance, "status": "already releasing"}
        inst.releasing = True
        self._tg.create_task(self._stop_instance(inst))
        return {"ok": True, "instance": instance, "status": "releasing"}

    async def _stop_instance(self, inst: Instance) -> None:
        """Announce it draining, let the controller stop sending, finish what runs, leave."""
        await self._heartbeat(self._kv)
        await asyncio.sleep(self.settings.heartbeat_s)
        while inst.inflight > 0 and inst.releasing:  # noqa: ASYNC110 (polls a counter)
            await asyncio.sleep(0.05)
        if not inst.releasing:
            return  # assigned again while it drained
        key = inst.info.instance
        self.instances.pop(key, None)
        self.retired[key] = inst
        try:
            await self._kv.delete(key)
        except Exception as exc:
            log.warning("agent_host.deregister_failed", error=str(exc))
        log.info("agent_host.instance_stopped", host=self.host_id, instance=key)

    async def _reject(self, msg: Msg, headers: dict[str, str], token: str,
                      error: MalformedMessage) -> None:
        """A call whose body cannot be read fails its future once; it is never retried."""
        await dead_letter(self.bus, service=f"agent-host:{self.host_id}",
                          subject=self.names.call(self.node, headers.get(H.AGENT) or "unknown"),
                          data=body_call(msg.data), headers=headers,
                          reason=f"malformed call: {error.message}")
        await self._publish_result(headers, None, error, self.host_id, {})
        if msg.reply:
            await self._done(msg.reply, headers, token, self.host_id, "error")


def _usage_summary(ctx: CallContext | None) -> dict[str, Any]:
    """What a call spent, for its journal entry (the per-request detail is in `llm` events)."""
    if ctx is None:
        return {}
    return {k: v for k, v in ctx.usage.items() if k != "llm"}


def body_call(data: bytes) -> bytes:
    """The call inside a dispatch message (what a dead letter of it keeps)."""
    try:
        call = Envelope.decode(data, expect="dispatch").body.get("call")
        return call if isinstance(call, bytes) else data
    except Exception:
        return data


def _time_left(timeout: float | None, deadline: float | None) -> float | None:
    """How long a call may run: its method's timeout, cut short by the deadline of its call
    or run (a call already past its deadline gets none)."""
    if deadline is None:
        return timeout
    left = max(0.001, deadline - time.time())
    return left if timeout is None else min(timeout, left)
