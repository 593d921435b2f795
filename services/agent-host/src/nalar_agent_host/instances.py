"""The agent instances a host serves (one per agent of its app, plus the workflow drivers):
made at start, assigned and released by its local controller, announced by heartbeat in the
instances KV bucket, and left on the way out."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from nalar.hosting import App, Engine
from nalar_common.cluster import InstanceInfo
from nalar_common.errors import NotFound
from nalar_common.logging import get_logger
from nalar_common.subjects import DRIVER_AGENT
from nalar_common.wire import ControlReply

from nalar_agent_host.settings import AgentHostSettings

log = get_logger(__name__)

RELEASE_POLL_S = 0.05


@dataclass
class Instance:
    info: InstanceInfo
    target: Any  # the agent object, or None for the driver pseudo-agent
    inflight: int = 0
    releasing: bool = False  # provisioning stops it: it finishes its calls, takes no new ones


class Instances:
    def __init__(self, app: App, node: str, settings: AgentHostSettings,
                 engine: Engine) -> None:
        self.app, self.node, self.settings, self.engine = app, node, settings, engine
        self.host_id = settings.host_id
        self.live: dict[str, Instance] = {}
        self.retired: dict[str, Instance] = {}  # released; still runs a late dispatch
        self.draining = False
        self.kv: Any = None  # the instances bucket, opened when the host starts
        self._changing: set[str] = set()  # agents whose new instance is starting

    def get(self, instance: str) -> Instance | None:
        return self.live.get(instance) or self.retired.get(instance)

    def make(self) -> None:
        """One instance of each agent the host serves (`agents`, or all), and the drivers."""
        wanted = {a.strip() for a in self.settings.agents.split(",") if a.strip()}
        unknown = wanted - set(self.app.agents)
        if unknown:
            raise NotFound(f"agents {sorted(unknown)} are not in the app at {self.app.path}")
        for name in self.app.agents:
            if not wanted or name in wanted:
                self._add(name)
        if self.settings.drivers and self.app.workflows:
            now = time.time()
            info = InstanceInfo(instance=f"{self.host_id}.{DRIVER_AGENT}", host=self.host_id,
                                node=self.node, agent=DRIVER_AGENT,
                                concurrency=self.settings.driver_concurrency, pid=os.getpid(),
                                started_at=now, ts=now)
            self.live[info.instance] = Instance(info, None)

    def _add(self, agent: str) -> Instance:
        spec, now = self.app.agents[agent], time.time()
        info = InstanceInfo(instance=f"{self.host_id}.{agent}", host=self.host_id,
                            node=self.node, agent=agent, concurrency=spec.concurrency,
                            pid=os.getpid(), started_at=now, ts=now, stateful=spec.stateful,
                            uses_state=spec.uses_state,
                            min_instances=spec.min_instances, max_instances=spec.max_instances,
                            startup_s=self.settings.engine_startup_s,
                            tools=sorted(m.name for m in spec.methods.values() if m.tool))
        inst = self.live[info.instance] = Instance(info, spec.cls())
        self.retired.pop(info.instance, None)
        return inst

    def agents(self) -> list[Instance]:
        return [i for i in self.live.values() if i.info.agent != DRIVER_AGENT]

    def free_slots(self) -> int | None:
        if self.settings.slots <= 0:
            return None
        busy = [i for i in self.agents() if not i.releasing]
        return self.settings.slots - len(busy) - len(self._changing)

    # -- heartbeat -----------------------------------------------------------------------
    async def heartbeat(self) -> None:
        now = time.time()
        scrape = getattr(self.engine, "scrape", None)
        if scrape is not None and getattr(self.engine, "scrape_metrics", False):
            await scrape()
        engine_stats = self.engine.stats()
        slots = self.free_slots()
        for key, inst in self.live.items():
            inst.info = replace(inst.info, ts=now, inflight=inst.inflight,
                                draining=self.draining or inst.releasing, engine=engine_stats,
                                slots_free=slots)
            await self.kv.put(key, inst.info.encode())

    async def heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.heartbeat()
            except Exception as exc:
                log.warning("agent_host.heartbeat_failed", error=str(exc))

    async def leave(self) -> None:
        """Out of the instance table (the host stops)."""
        try:
            for key in self.live:
                await self.kv.delete(key)
        except Exception as exc:
            log.warning("agent_host.deregister_failed", error=str(exc))

    # -- provisioning ----------------------------------------------------------------------
    def assign(self, agent: str, tg: asyncio.TaskGroup) -> ControlReply:
        """Start an instance of `agent` here (after the engine's start-up time)."""
        if agent not in self.app.agents:
            return ControlReply(ok=False, error=f"agent {agent!r} is not in the app")
        current = self.live.get(f"{self.host_id}.{agent}")
        if (current is not None and not current.releasing) or agent in self._changing:
            return ControlReply(ok=True, agent=agent, status="already here")
        slots = self.free_slots()
        if slots is not None and slots <= 0:
            return ControlReply(ok=False, error=f"host {self.host_id} has no free slot")
        self._changing.add(agent)
        tg.create_task(self._start(agent))
        return ControlReply(ok=True, agent=agent, status="starting",
                            startup_s=self.settings.engine_startup_s)

    async def _start(self, agent: str) -> None:
        try:
            await asyncio.sleep(self.settings.engine_startup_s)  # the engine loads its model
            current = self.live.get(f"{self.host_id}.{agent}")
            if current is not None:
                current.releasing = False  # released meanwhile: it serves again
            else:
                self._add(agent)
            await self.heartbeat()
            log.info("agent_host.instance_started", host=self.host_id, agent=agent)
        finally:
            self._changing.discard(agent)

    def release(self, instance: str, tg: asyncio.TaskGroup) -> ControlReply:
        """Stop an instance: it finishes what it runs, takes nothing new, then leaves."""
        inst = self.live.get(instance)
        if inst is None or inst.info.agent == DRIVER_AGENT:
            return ControlReply(ok=False,
                                error=f"no agent instance {instance!r} on {self.host_id}")
        if inst.releasing:
            return ControlReply(ok=True, instance=instance, status="already releasing")
        inst.releasing = True
        tg.create_task(self._stop(inst))
        return ControlReply(ok=True, instance=instance, status="releasing")

    async def _stop(self, inst: Instance) -> None:
        """Announce it draining, let the controller stop sending, finish what runs, leave."""
        await self.heartbeat()
        await asyncio.sleep(self.settings.heartbeat_s)
        while inst.inflight > 0 and inst.releasing:  # noqa: ASYNC110 (polls a counter)
            await asyncio.sleep(RELEASE_POLL_S)
        if not inst.releasing:
            return  # assigned again while it drained
        key = inst.info.instance
        self.live.pop(key, None)
        self.retired[key] = inst
        try:
            await self.kv.delete(key)
        except Exception as exc:
            log.warning("agent_host.deregister_failed", error=str(exc))
        log.info("agent_host.instance_stopped", host=self.host_id, instance=key)
