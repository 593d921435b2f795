"""The cluster as every process sees it: live agent instances (KV `nalar_instances`) and the
current policy snapshot (KV `nalar_policy`), each kept current by one KV watcher per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.js.kv import KeyValue

from nalar_common.bus import Bus
from nalar_common.dlq import dead_letter
from nalar_common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class InstanceInfo:
    """One agent instance, refreshed by its host's heartbeat (key = `instance`)."""

    instance: str
    host: str
    node: str
    agent: str
    concurrency: int
    pid: int = 0
    started_at: float = 0.0
    ts: float = 0.0
    inflight: int = 0
    draining: bool = False  # shutting down: finishes what it runs, takes nothing new
    stateful: bool = False  # a session's calls stay on one instance, in order
    uses_state: bool = False  # its methods use managed state (a session lease per call)
    engine: dict[str, Any] = field(default_factory=dict)  # the host's LLM engine load
    min_instances: int = 1  # the agent's bounds, for rebalancing (`@nalar.agent(...)`)
    max_instances: int | None = None
    startup_s: float = 0.0  # what a new instance of this agent takes to start (its engine)
    slots_free: int | None = None  # more instances its host may start (None: no limit)
    tools: list[str] = field(default_factory=list)  # its `@nalar.tool` methods (replays skip)

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> InstanceInfo:
        return cls(**{k: v for k, v in json.loads(data).items()
                      if k in cls.__dataclass_fields__})


@dataclass(slots=True)
class PolicySnapshot:
    """What the global controller decided; local controllers and stubs apply it at once.

    `routes[agent][node]` are routing weights between nodes; `instance_weights[agent][instance]`
    between instances (an instance left out, or weighted 0, takes no new calls);
    `sessions[session][agent]` routes a session's calls to an instance, and its queued calls
    move there at once (`route_session`); `affinity[session][agent]` is the instance holding
    the session's state and KV cache, preferred until its queue is too long (spill-over);
    `priorities[session]` and `agent_priorities[session][agent]` raise a session's queue
    priority. One-shot actions carry an `id` that receivers apply once: `migrations`
    ({id, session, agent, src, dst}: move the queued calls and the state lease),
    `provisions` ({id, agent, node}: start an instance) and `releases` ({id, instance}).
    """

    generated_at: float = 0.0
    controller: str = ""
    policies: list[str] = field(default_factory=list)
    routes: dict[str, dict[str, float]] = field(default_factory=dict)
    instance_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)
    agent_priorities: dict[str, dict[str, int]] = field(default_factory=dict)
    affinity: dict[str, dict[str, str]] = field(default_factory=dict)
    migrations: list[dict[str, str]] = field(default_factory=list)
    provisions: list[dict[str, str]] = field(default_factory=list)
    releases: list[dict[str, str]] = field(default_factory=list)
    revision: int = 0

    def encode(self) -> bytes:
        d = asdict(self)
        d.pop("revision")
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes, revision: int = 0) -> PolicySnapshot:
        raw = json.loads(data)
        snap = cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})
        snap.revision = revision
        return snap

    def same_decisions(self, other: PolicySnapshot | None) -> bool:
        return other is not None and self._decisions() == other._decisions()

    def _decisions(self) -> tuple[Any, ...]:
        return (self.routes, self.instance_weights, self.sessions, self.priorities,
                self.agent_priorities, self.affinity, self.migrations, self.provisions,
                self.releases)

    def priority(self, session: str, agent: str) -> int | None:
        """The priority the policy gives this session's calls of `agent`, if any."""
        per_agent = self.agent_priorities.get(session)
        if per_agent and agent in per_agent:
            return per_agent[agent]
        return self.priorities.get(session)


class _Instances(dict[str, "InstanceInfo"]):
    """The instance table, counting its changes (what the view's answers are cached by)."""

    version = 0

    def __setitem__(self, key: str, value: InstanceInfo) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, key: str, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)


class ClusterView:
    """Local, eventually consistent copy of instances and policy; never on a network path.

    `live_instances` is asked on every call (by callers choosing a node, by controllers
    placing): its answer is cached until the instance table changes or the first of its
    instances' heartbeats would go stale.
    """

    def __init__(self, bus: Bus, *, instance_ttl_s: float | None = None) -> None:
        self._bus = bus
        self._ttl = instance_ttl_s or bus.settings.instance_ttl_s
        self.instances: dict[str, InstanceInfo] = _Instances()
        self._live: dict[tuple[str, str | None],
                         tuple[tuple[int, int], float, list[InstanceInfo]]] = {}
        self.snapshot: PolicySnapshot | None = None
        self._ready = asyncio.Event()
        self._initial_done: set[str] = set()
        self._changed = asyncio.Event()
        self._rng = random.Random()
        self._rewatch = {"policy": asyncio.Event(), "instances": asyncio.Event()}
        bus.on_reconnect(self._on_reconnect)

    async def _on_reconnect(self) -> None:
        """A watcher is an ordered consumer held in the server's memory: a restarted
        nats-server has forgotten it, and nats.py notices only after two missed idle
        heartbeats (10-20 s), while every heartbeat goes unseen: start the watches again."""
        for ev in self._rewatch.values():
            ev.set()

    async def run(self) -> None:
        """Watch both buckets until cancelled."""
        names = self._bus.names
        pol = await self._bus.kv(names.policy_bucket, history=10)
        inst = await self._bus.kv(names.instances_bucket, history=1, ttl=self._ttl)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_again(pol, self._on_policy, "policy"))
            tg.create_task(self._watch_again(inst, self._on_instance, "instances"))

    async def _watch_again(self, kv: KeyValue, apply: Any, what: str) -> None:
        """`_watch`, started afresh after every reconnect."""
        while True:
            self._rewatch[what].clear()
            watch = asyncio.ensure_future(self._watch(kv, apply, what))
            again = asyncio.ensure_future(self._rewatch[what].wait())
            try:
                done, _ = await asyncio.wait({watch, again},
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when this task is cancelled (the process stops)
                for task in (watch, again):
                    task.cancel()
                await asyncio.gather(watch, again, return_exceptions=True)
            if watch in done:
                watch.result()  # the watch ended by itself: raise what ended it
                return

    async def _watch(self, kv: KeyValue, apply: Any, what: str) -> None:
        watcher = await kv.watchall()
        initial_done = False
        try:
            async for entry in watcher:
                if entry is None:
                    initial_done = True
                elif entry.operation in ("DEL", "PURGE") or not entry.value:
                    apply(entry.key, None, entry.revision)
                else:
                    try:
                        apply(entry.key, entry.value, entry.revision)
                    except Exception as exc:
                        await self._unreadable(kv, entry, what, exc)
                if initial_done:
                    self._mark_ready(what)
                self._changed.set()
        finally:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _unreadable(self, kv: KeyValue, entry: Any, what: str, exc: Exception) -> None:
        """A value nobody wrote properly: ignored (the last good one stands) and
        dead-lettered, once per process that reads it."""
        await dead_letter(self._bus, service=f"cluster-view:{what}",
                          subject=f"{self._bus.names.root}.kv.{what}.{entry.key}"[:200],
                          data=entry.value or b"", headers=None,
                          reason=f"unreadable {what} entry {entry.key!r}: {exc}")

    def _mark_ready(self, what: str) -> None:
        """Ready once both buckets have delivered their initial values."""
        self._initial_done.add(what)
        if len(self._initial_done) == 2:
            self._ready.set()

    def _on_policy(self, key: str, value: bytes | None, revision: int) -> None:
        if key == self._bus.names.POLICY_KEY and value:
            self.snapshot = PolicySnapshot.decode(value, revision)

    def _on_instance(self, key: str, value: bytes | None, revision: int) -> None:
        if value is None:
            self.instances.pop(key, None)
        else:
            self.instances[key] = InstanceInfo.decode(value)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def wait_changed(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    # -- queries ---------------------------------------------------------------
    def live(self, now: float | None = None) -> list[InstanceInfo]:
        """Instances whose heartbeat is fresh (expired KV entries leave no delete marker)."""
        cutoff = (now or time.time()) - self._ttl
        return [i for i in self.instances.values() if i.ts >= cutoff]

    def live_instances(self, agent: str, node: str | None = None) -> list[InstanceInfo]:
        """Instances that take new work (fresh, not draining). Do not change the list."""
        now = time.time()
        # a table assigned anew starts counting again: its identity is part of the version
        version = (id(self.instances), getattr(self.instances, "version", -1))
        hit = self._live.get((agent, node))
        if hit is not None and hit[0] == version and version[1] >= 0 and now < hit[1]:
            return hit[2]
        found = [i for i in self.live(now) if i.agent == agent and not i.draining
                 and (node is None or i.node == node)]
        # valid until a change of the table, or the first of them would go stale; one that
        # is stale now comes back only with a new heartbeat, which changes the table
        until = min((i.ts for i in found), default=now) + self._ttl
        if len(self._live) > 4096:
            self._live.clear()
        self._live[(agent, node)] = (version, until, found)
        return found

    def nodes(self) -> set[str]:
        return {i.node for i in self.live()}

    def choose_node(self, agent: str, session: str = "") -> str | None:
        """Node for a new call: session pin, then policy weights, then any node with capacity."""
        live = self.live_instances(agent)
        nodes_with = {i.node for i in live}
        if session and any(i.stateful for i in live):
            # a stateful agent's session always enters at the same node, so its calls reach
            # their pinned instance in the order they were made (rendezvous hashing: a
            # session moves only if its node leaves)
            return max(nodes_with, key=lambda n: hashlib.sha256(
                f"{agent}|{session}|{n}".encode()).digest())
        snap = self.snapshot
        if snap is not None:
            pinned = (snap.sessions.get(session, {}).get(agent)
                      or snap.affinity.get(session, {}).get(agent)) if session else None
            if pinned:
                pinned_node = next((i.node for i in live if i.instance == pinned), None)
                if pinned_node:
                    return pinned_node
            weights = {n: w for n, w in snap.routes.get(agent, {}).items()
                       if n in nodes_with and w > 0}
            if weights:
                return self._weighted(weights)
        if nodes_with:
            capacity: dict[str, float] = {}
            for i in live:
                capacity[i.node] = capacity.get(i.node, 0.0) + i.concurrency
            return self._weighted(capacity)
        nodes = self.nodes()
        return self._rng.choice(sorted(nodes)) if nodes else None

    def _weighted(self, weights: dict[str, float]) -> str:
        if len(weights) == 1:
            return next(iter(weights))
        keys = list(weights)
        return self._rng.choices(keys, weights=[weights[k] for k in keys])[0]
