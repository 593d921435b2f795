"""AgentHost: hosts one instance of each agent of an app (and the workflow drivers), runs what
its local controller dispatches, publishes results to NALAR_FUTURES and heartbeats into KV.

It wires a few parts together: `Instances` (what it serves, heartbeat, assign and release),
`Execution` (one call: context, state lease, timeout, retry policy, signals), `Reporter`
(result, journal, `done`) and `Cancellations`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nalar.hosting import App, Engine, Runtime, SimulatedEngine, load_app
from nalar_common.bus import Bus
from nalar_common.calls import CallSpec
from nalar_common.dlq import dead_letter
from nalar_common.errors import MalformedMessage
from nalar_common.ledger import Ledger
from nalar_common.logging import get_logger
from nalar_common.process import Shutdown
from nalar_common.state import SessionStore
from nalar_common.subjects import Headers as H
from nalar_common.wire import ControlReply, ControlRequest, DecodeError, Dispatch
from nats.aio.msg import Msg

from nalar_agent_host.cancels import Cancellations
from nalar_agent_host.execution import Execution
from nalar_agent_host.instances import Instances
from nalar_agent_host.reporting import Reporter
from nalar_agent_host.sessions import SessionStates
from nalar_agent_host.settings import AgentHostSettings

log = get_logger(__name__)


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
        agent_calls = sum(spec.concurrency for spec in self.app.agents.values())
        self.pool = ThreadPoolExecutor(max_workers=max(settings.threads, agent_calls),
                                       thread_name_prefix="nalar-agent")
        self.driver_pool = ThreadPoolExecutor(max_workers=max(1, settings.driver_concurrency),
                                              thread_name_prefix="nalar-driver")
        self.store = store
        states = SessionStates(store, lease_ttl_ms=settings.state_lease_ttl_ms,
                               wait_s=settings.state_wait_s) if store else None
        ledger = Ledger(store.r, self.names, ttl_s=settings.ledger_ttl_s,
                        claim_ttl_ms=settings.ledger_claim_ttl_ms) if store else None
        self.instances = Instances(self.app, node, settings, self.engine)
        self.cancels = Cancellations()
        self.reporter = Reporter(bus, self.host_id, self.runtime.waiter)
        self.execution = Execution(bus, node, self.app, self.instances, self.runtime,
                                   (self.pool, self.driver_pool), self.reporter,
                                   self.cancels, ledger, states)
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._tokens: set[str] = set()  # dispatch tokens of the calls running here
        self._tg: asyncio.TaskGroup | None = None

    @property
    def stats(self) -> dict[str, int]:
        return self.execution.stats

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        await self.bus.ensure_topology()
        self.instances.make()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = self.reporter.tg = tg
                tg.create_task(self.runtime.run())
                await self.runtime.wait_ready()
                nc = self.bus.nc
                sub = await nc.subscribe(self.names.exec(self.host_id), cb=self._on_exec)
                await nc.subscribe(self.names.all_cancels, cb=self._on_cancel)
                await nc.subscribe(self.names.control(self.host_id), cb=self._on_control)
                self.instances.kv = await self.bus.kv(self.names.instances_bucket)
                await self.instances.heartbeat()
                tg.create_task(self.instances.heartbeat_loop())
                log.info("agent_host.started", host=self.host_id, node=self.node,
                         agents=sorted(i.info.agent for i in self.instances.live.values()))
                await self._stopping.wait()
                await self._drain(sub)
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

    async def _drain(self, sub: Any) -> None:
        """Stop intake: announce draining, finish what runs, then leave the instance table.
        Best effort on the bus: NATS may already be gone when the whole machine stops."""
        self.instances.draining = True
        try:
            await self.instances.heartbeat()
            await sub.unsubscribe()
        except Exception as exc:
            log.warning("agent_host.drain_announce_failed", error=str(exc))
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self.settings.grace_s)
        await self.instances.leave()

    # -- messages --------------------------------------------------------------------------
    async def _on_exec(self, msg: Msg) -> None:
        assert self._tg is not None
        try:
            dispatch = Dispatch.decode(msg.data)
        except DecodeError as exc:  # not from a local controller: nothing to answer
            await dead_letter(self.bus, service=f"agent-host:{self.host_id}",
                              subject=msg.subject, data=msg.data, headers=msg.headers,
                              reason=f"malformed dispatch: {exc.message}")
            return
        self._tokens.add(dispatch.token)  # at once: a controller may ask before it starts
        task = self._tg.create_task(self._execute(dispatch, msg.reply))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _execute(self, dispatch: Dispatch, reply: str) -> None:
        """Never raises: an error here would stop the host and every call it runs."""
        try:
            try:
                call = CallSpec.decode(dispatch.call)
            except MalformedMessage as exc:
                await self._reject(dispatch, reply, exc)
                return
            await self.execution.run(call, dispatch, reply)
        except Exception:
            log.exception("agent_host.execute_failed")
        finally:
            self._tokens.discard(dispatch.token)

    async def _reject(self, dispatch: Dispatch, reply: str, error: MalformedMessage) -> None:
        """A call whose body cannot be read fails its future once; it is never retried."""
        headers = dispatch.headers
        await dead_letter(self.bus, service=f"agent-host:{self.host_id}",
                          subject=self.names.call(self.node, headers.get(H.AGENT) or "unknown"),
                          data=dispatch.call, headers=headers,
                          reason=f"malformed call: {error.message}")
        await self.reporter.result(headers, None, error, self.host_id, {})
        if reply:
            await self.reporter.done(reply, headers, dispatch.token, self.host_id, "error")

    async def _on_cancel(self, msg: Msg) -> None:
        self.cancels.cancel(msg.subject.rsplit(".", 1)[1])

    async def _on_control(self, msg: Msg) -> None:
        """`{"op": "assign", "agent": A}` starts an instance of A here (after the engine's
        start-up time); `{"op": "release", "instance": I}` stops one: it finishes what it
        runs, takes nothing new, then leaves the instance table; `{"op": "running",
        "tokens": [...]}` says which of those dispatches run here. Replies with what it did."""
        assert self._tg is not None
        quiet = False  # `running` is asked often: not logged
        try:
            req = ControlRequest.decode(msg.data)
            if req.op == "assign":
                result = self.instances.assign(req.agent, self._tg)
            elif req.op == "release":
                result = self.instances.release(req.instance, self._tg)
            else:  # running: a controller checks calls it has not heard back about
                quiet = True
                result = ControlReply(ok=True, running=tuple(
                    t for t in req.tokens if t in self._tokens))
        except DecodeError as exc:
            result = ControlReply(ok=False, error=exc.message)
            await dead_letter(self.bus, service=f"agent-host:{self.host_id}",
                              subject=msg.subject, data=msg.data, headers=msg.headers,
                              reason=f"malformed control message: {exc.message}")
        except Exception as exc:  # answered all the same: the controller must not wait
            result = ControlReply(ok=False, error=str(exc) or type(exc).__name__)
        if not quiet:
            log.info("agent_host.control", host=self.host_id, ok=result.ok,
                     status=result.status, error=result.error)
        if msg.reply:
            await self.bus.nc.publish(msg.reply, result.encode())
