"""Starting and stopping instances on this node's agent hosts as the policy's snapshots say:
releases first (a host whose instance is released has a slot for a new one), then provisions
on hosts with a free slot, else a host process this controller starts itself."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import replace

from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView, PolicySnapshot
from nalar_common.logging import get_logger
from nalar_common.servers import die_with_parent
from nalar_common.wire import ControlReply, ControlRequest

from nalar_local_controller.book import Book, OneShot, Tasks
from nalar_local_controller.queues import InstanceQueue
from nalar_local_controller.settings import LocalControllerSettings

log = get_logger(__name__)

STOP_HOST_S = 30.0


class Provisioning:
    def __init__(self, bus: Bus, node: str, book: Book, view: ClusterView, tasks: Tasks,
                 once: OneShot, settings: LocalControllerSettings,
                 requeue: Callable[[InstanceQueue], None]) -> None:
        self.bus, self.node, self.book, self.view, self.tasks = bus, node, book, view, tasks
        self.once, self.settings, self.requeue = once, settings, requeue
        self.spawned: dict[str, asyncio.subprocess.Process] = {}  # host id -> process
        self._spawn_seq = 0

    async def control(self, host: str, req: ControlRequest) -> ControlReply:
        """Ask an agent host (assign, release, running); not `ok` when it does not answer."""
        try:
            reply = await self.bus.nc.request(self.bus.names.control(host), req.encode(),
                                              timeout=self.settings.control_timeout_s)
            return ControlReply.decode(reply.data)
        except Exception as exc:
            return ControlReply(ok=False, error=str(exc) or type(exc).__name__)

    def apply(self, snap: PolicySnapshot) -> None:
        releases = [a for a in snap.releases
                    if a.get("instance") in self.book.queues and self.once.first_time(a)]
        provisions = [a for a in snap.provisions
                      if a.get("node") == self.node and self.once.first_time(a)]
        if releases or provisions:
            self.tasks.spawn(self._provisioning(releases, provisions, snap))

    async def _provisioning(self, releases: list[dict[str, str]],
                            provisions: list[dict[str, str]], snap: PolicySnapshot) -> None:
        for action in releases:
            await self.release(action)
        assigned: set[tuple[str, str]] = set()  # (host, agent) started by this snapshot
        for action in provisions:
            await self.provision(action, snap, assigned)

    async def provision(self, action: dict[str, str], snap: PolicySnapshot,
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
            result = await self.control(host, ControlRequest.assign(agent))
            if result.ok:
                assigned.add((host, agent))
                self.book.stats["provisioned"] += 1
                log.info("instance.provisioned", agent=agent, host=host, status=result.status)
                return
        if len(self.spawned) < self.settings.spawn_hosts:
            await self.spawn_host(agent)
            return
        log.warning("instance.provision_failed", agent=agent, node=self.node, tried=hosts)

    async def spawn_host(self, agent: str) -> None:
        """Start an agent host process for one instance of `agent` (with this process's
        environment: the same app and servers); it stops again when that instance is
        released."""
        self._spawn_seq += 1
        host = f"{self.node}-p{self._spawn_seq}-{os.getpid()}"
        env = {**os.environ, "NALAR_NODE_NAME": self.node, "NALAR_AGENT_HOST_HOST_ID": host,
               "NALAR_AGENT_HOST_AGENTS": agent, "NALAR_AGENT_HOST_SLOTS": "1",
               "NALAR_AGENT_HOST_DRIVERS": "false"}
        self.spawned[host] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nalar_agent_host", env=env,
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent)
        self.book.stats["provisioned"] += 1
        log.info("host.spawned", host=host, agent=agent, pid=self.spawned[host].pid)

    async def stop_spawned(self, host: str | None = None) -> None:
        """SIGTERM spawned hosts (one, or all): each finishes what it runs, then exits."""
        for name in [host] if host else list(self.spawned):
            proc = self.spawned.pop(name, None)
            if proc is None or proc.returncode is not None:
                continue
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=STOP_HOST_S)
            except TimeoutError:
                proc.kill()
            log.info("host.stopped", host=name)

    async def release(self, action: dict[str, str]) -> bool:
        """Stop an instance: it takes nothing new from now on; what is queued for it goes
        elsewhere; a host process started for it goes too."""
        queue = self.book.queues.get(action["instance"])
        if queue is None:
            return False
        result = await self.control(queue.info.host, ControlRequest.release(action["instance"]))
        if not result.ok:
            log.warning("instance.release_failed", instance=action["instance"],
                        error=result.error)
            return False
        self.book.stats["released"] += 1
        log.info("instance.released", instance=action["instance"])
        if queue.info.host in self.spawned:  # its only instance: the process goes too
            self.tasks.spawn(self.stop_spawned(queue.info.host))
        queue.info = replace(queue.info, draining=True)
        self.requeue(queue)
        return True
