"""AgentHost: hosts one instance of each agent of an app (and the workflow drivers), runs what
its local controller dispatches, publishes results to NALAR_FUTURES and heartbeats into KV.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from nalar.app import App, load_app
from nalar.llm import SimulatedEngine
from nalar.runtime import Runtime
from nalar_common.bus import Bus
from nalar_common.calls import CallSpec, publish_result
from nalar_common.cluster import InstanceInfo
from nalar_common.envelope import Envelope
from nalar_common.errors import MalformedMessage, NalarError, NotFound
from nalar_common.journal import Event, record
from nalar_common.logging import get_logger
from nalar_common.process import Shutdown
from nalar_common.subjects import DRIVER_AGENT
from nalar_common.subjects import Headers as H
from nats.aio.msg import Msg

from nalar_agent_host.executor import as_error, context_for, invoke, lookup, resolve_args
from nalar_agent_host.settings import AgentHostSettings

log = get_logger(__name__)


@dataclass
class Instance:
    info: InstanceInfo
    target: Any  # the agent object, or None for the driver pseudo-agent
    inflight: int = 0


class AgentHost:
    def __init__(self, bus: Bus, node: str, settings: AgentHostSettings,
                 app: App | None = None) -> None:
        self.bus, self.node, self.settings = bus, node, settings
        self.names = bus.names
        self.host_id = settings.host_id
        self.app = app or load_app(settings.app)
        self.runtime = Runtime(bus, engine=SimulatedEngine(time_scale=settings.llm_time_scale))
        self.pool = ThreadPoolExecutor(max_workers=settings.threads,
                                       thread_name_prefix="nalar-worker")
        self.instances: dict[str, Instance] = {}
        self._stopping = asyncio.Event()
        self.draining = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        self.stats = {"executed": 0, "failed": 0, "duplicates": 0}

    def _make_instances(self) -> None:
        wanted = {a.strip() for a in self.settings.agents.split(",") if a.strip()}
        unknown = wanted - set(self.app.agents)
        if unknown:
            raise NotFound(f"agents {sorted(unknown)} are not in the app at {self.app.path}")
        now = time.time()
        for name, spec in self.app.agents.items():
            if wanted and name not in wanted:
                continue
            info = InstanceInfo(instance=f"{self.host_id}.{name}", host=self.host_id,
                                node=self.node, agent=name, concurrency=spec.concurrency,
                                pid=os.getpid(), started_at=now, ts=now)
            self.instances[info.instance] = Instance(info, spec.cls())
        if self.settings.drivers and self.app.workflows:
            info = InstanceInfo(instance=f"{self.host_id}.{DRIVER_AGENT}", host=self.host_id,
                                node=self.node, agent=DRIVER_AGENT,
                                concurrency=self.settings.driver_concurrency, pid=os.getpid(),
                                started_at=now, ts=now)
            self.instances[info.instance] = Instance(info, None)

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
                kv = await self.bus.kv(self.names.instances_bucket)
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
        for key, inst in self.instances.items():
            inst.info = replace(inst.info, ts=now, inflight=inst.inflight,
                                draining=self.draining)
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
        task = self._tg.create_task(self._execute(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _execute(self, msg: Msg) -> None:
        started = time.time()
        try:
            body = Envelope.decode(msg.data, expect="dispatch").body
            headers: dict[str, str] = dict(body["headers"])
        except Exception as exc:  # not from a local controller: nothing to answer
            log.warning("dispatch.malformed", error=str(exc))
            return
        try:
            call = CallSpec.decode(body["call"])
        except MalformedMessage as exc:
            await self._reject(msg, headers, exc)
            return
        inst = self.instances.get(body.get("instance", ""))
        value: Any = None
        error: NalarError | None = None
        is_driver = call.agent == DRIVER_AGENT
        if inst is not None:
            inst.inflight += 1
        try:
            if inst is None:
                raise NotFound(f"instance {body.get('instance')!r} is not on host {self.host_id}")
            if is_driver:
                wf = self.app.workflows.get(call.method)
                if wf is None:
                    raise NotFound(f"workflow {call.method!r} is not in the app")
                fn = wf.fn
                await record(self.bus, call.run, Event.STARTED, {
                    "workflow": call.method, "host": self.host_id, "node": self.node,
                    "attempt": call.attempt}, acked=True)
            else:
                fn = lookup(inst.target, call.method, call.agent)
            args, kwargs = resolve_args(call, body.get("deps") or {})
            attempt = int(headers.get(H.ATTEMPT) or call.attempt)
            value = await invoke(fn, args, kwargs, context_for(self.runtime, call, attempt),
                                 self.pool)
        except Exception as exc:
            error = as_error(exc, call)
        finally:
            if inst is not None:
                inst.inflight -= 1
        finished = time.time()
        timings = {"created": call.created_at, "dispatched": body.get("dispatched_at", 0.0),
                   "started": started, "finished": finished}
        executor = inst.info.instance if inst else self.host_id
        published = await publish_result(self.bus, headers, value=value, error=error,
                                         executor=executor, timings=timings)
        self.stats["executed"] += 1
        if error is not None:
            self.stats["failed"] += 1
            log.info("call.failed", run_id=call.run, future_id=call.future, agent=call.agent,
                     method=call.method, code=error.error_code, message=error.message)
        if not published:
            self.stats["duplicates"] += 1
        await record(self.bus, call.run, Event.FUTURE_RESOLVED, {
            "future": call.future, "agent": call.agent, "method": call.method,
            "status": "ok" if error is None else "error", "executor": executor,
            "timings": timings})
        if is_driver and published:
            outcome: dict[str, Any] = ({"status": "succeeded"} if error is None else
                                       {"status": "failed", "error": error.to_wire()})
            await record(self.bus, call.run, Event.FINISHED, outcome, acked=True)
        if msg.reply:
            await self._done(msg.reply, headers, executor, "ok" if error is None else "error")

    async def _done(self, reply: str, headers: dict[str, str], executor: str, status: str) -> None:
        """Tell the local controller the call is over, so it acks it and frees the slot."""
        await self.bus.nc.publish(reply, b"", headers={
            H.RUN: headers.get(H.RUN, ""), H.FUTURE: headers.get(H.FUTURE, ""),
            H.INSTANCE: executor, H.STATUS: status})

    async def _reject(self, msg: Msg, headers: dict[str, str], error: MalformedMessage) -> None:
        """A call whose body cannot be read fails its future once; it is never retried."""
        log.warning("call.malformed", run_id=headers.get(H.RUN), future_id=headers.get(H.FUTURE),
                    error=error.message)
        await publish_result(self.bus, headers, error=error, executor=self.host_id)
        if msg.reply:
            await self._done(msg.reply, headers, self.host_id, "error")
