"""GlobalController: one active at a time (a lease in KV); folds telemetry from local
controllers into a cluster view and writes the policies' decisions to KV `nalar_policy` as one
snapshot, with compare-and-set on its revision. Never on a call's critical path.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView, PolicySnapshot
from nalar_common.dlq import dead_letter
from nalar_common.logging import get_logger
from nalar_common.process import Shutdown
from nalar_common.wire import DecodeError, Telemetry
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from nalar_global_controller.policies import (
    ClusterState,
    Decisions,
    Policy,
    PolicyAllowList,
    PolicyNotAllowed,
    describe,
    load_policies,
    parse_specs,
)
from nalar_global_controller.settings import GlobalControllerSettings

MAX_TELEMETRY_BYTES = 4 * 1024 * 1024

log = get_logger(__name__)


class GlobalController:
    def __init__(self, bus: Bus, settings: GlobalControllerSettings,
                 policies: list[Policy] | None = None, *,
                 allowed: PolicyAllowList | None = None) -> None:
        """`allowed`: the policy classes that `policies` and the KV config may name (default:
        the built-ins only)."""
        self.bus, self.settings = bus, settings
        self.names = bus.names
        self._unreadable: list[tuple[str, bytes, str]] = []  # telemetry to dead-letter
        self.allowed = allowed or PolicyAllowList.builtin()
        self.policies = policies if policies is not None else \
            load_policies(settings.policies, self.allowed)
        self.policy_names = [type(p).__name__ for p in self.policies]
        self.view = ClusterView(bus)
        self.telemetry: dict[str, dict[str, Any]] = {}
        self._raw: dict[str, bytes] = {}  # node -> its latest telemetry, not decoded yet
        self.is_leader = False
        self.last: PolicySnapshot | None = None
        self._last_write = 0.0
        self._config_rev = 0
        self._actions: dict[str, tuple[str, float, dict[str, str]]] = {}  # key -> id, first
        self._action_seq = 0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        await self.bus.ensure_topology()
        kv = await self.bus.kv(self.names.policy_bucket, history=10)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.view.run())
                sub = await self.bus.nc.subscribe(self.names.all_telemetry, cb=self._on_telemetry)
                rounds = tg.create_task(self._loop(kv))
                lease = tg.create_task(self._lease_loop(kv))
                log.info("global_controller.started", id=self.settings.controller_id,
                         policies=self.policy_names)
                await self._stopping.wait()
                await sub.unsubscribe()
                # no more rounds and no more renewals before resigning: a stopping controller
                # once took the lease back after giving it up, and a standby waited it out
                for task in (rounds, lease):
                    task.cancel()
                await asyncio.gather(rounds, lease, return_exceptions=True)
                if self.is_leader:
                    await self._resign(kv)
                raise Shutdown
        except* Shutdown:
            pass

    def stop(self) -> None:
        self._stopping.set()

    async def _on_telemetry(self, msg: Msg) -> None:
        """Keep the latest message per node; it is decoded once per round, when used."""
        if len(msg.data) > MAX_TELEMETRY_BYTES:
            await dead_letter(self.bus, service="global-controller", subject=msg.subject,
                              data=msg.data, headers=msg.headers,
                              reason=f"telemetry of {len(msg.data)} bytes is too large")
            return
        self._raw[msg.subject.rsplit(".", 1)[-1]] = msg.data

    def _fold_telemetry(self) -> list[tuple[str, bytes, str]]:
        """Decode the latest telemetry per node; returns the unreadable ones."""
        raw, self._raw = self._raw, {}
        bad = []
        for node, data in raw.items():
            try:
                tel = Telemetry.decode(data)
            except DecodeError as exc:
                bad.append((self.names.telemetry(node), data, exc.message))
                continue
            self.telemetry[tel.node] = tel.as_dict()  # policies read maps (ClusterState)
        return bad

    async def _loop(self, kv: KeyValue) -> None:
        """Policy rounds, while this controller holds the lease (renewed on its own schedule
        by `_lease_loop`, so a long round never lets it lapse)."""
        while True:
            try:
                if self.is_leader:
                    await self.tick(kv)
            except Exception:
                log.exception("global_controller.tick_failed")
            await asyncio.sleep(self.settings.interval_s)

    async def _lease_loop(self, kv: KeyValue) -> None:
        while True:
            try:
                await self._hold_lease(kv)
            except Exception:
                log.exception("global_controller.lease_failed")
            await asyncio.sleep(self.settings.interval_s)

    # -- leadership ----------------------------------------------------------------------
    async def _hold_lease(self, kv: KeyValue) -> bool:
        me, now = self.settings.controller_id, time.time()
        value = json.dumps({"id": me, "expires_at": now + self.settings.lease_ttl_s}).encode()
        try:
            entry = await kv.get(self.names.LEADER_KEY)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None or not entry.value:
                await kv.create(self.names.LEADER_KEY, value)
            else:
                cur = json.loads(entry.value)
                if cur["id"] != me and cur["expires_at"] > now:
                    self._set_leader(False)
                    return False
                await kv.update(self.names.LEADER_KEY, value, last=entry.revision)
        except (KeyWrongLastSequenceError, Exception) as exc:
            if not isinstance(exc, KeyWrongLastSequenceError):
                log.debug("global_controller.lease_race", error=str(exc))
            self._set_leader(False)
            return False
        self._set_leader(True)
        return True

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader:
            log.info("global_controller.leadership", leader=leader, id=self.settings.controller_id)
        self.is_leader = leader

    async def _resign(self, kv: KeyValue) -> None:
        try:
            await kv.delete(self.names.LEADER_KEY)
        except Exception:
            pass

    # -- policy --------------------------------------------------------------------------
    _INFO = ("agent", "node", "host", "concurrency", "inflight", "draining", "stateful",
             "min_instances", "max_instances", "startup_s", "slots_free", "engine")

    def state(self) -> ClusterState:
        self._unreadable += self._fold_telemetry()
        now = time.time()
        fresh = {n: t for n, t in self.telemetry.items()
                 if now - float(t.get("ts", 0)) < self.settings.telemetry_stale_s}
        instances: dict[str, dict[str, Any]] = {}
        for info in self.view.live(now):
            row: dict[str, Any] = {k: getattr(info, k) for k in self._INFO}
            row["queue"] = 0
            row.update(fresh.get(info.node, {}).get("instances", {}).get(info.instance, {}))
            row["draining"] = info.draining  # the host's word is the latest
            instances[info.instance] = row
        return ClusterState(telemetry=fresh, instances=instances, now=now)

    def compute(self, state: ClusterState | None = None) -> PolicySnapshot:
        """Run the policies on the cluster state (read now unless given) into a snapshot."""
        state = state if state is not None else self.state()
        out = Decisions(state)
        for policy in self.policies:
            try:
                policy.decide(state, out)
            except Exception:
                log.exception("policy.failed", policy=type(policy).__name__)
        snap = out.snapshot
        self._stamp_actions(snap, state.now)
        snap.generated_at = state.now
        snap.controller = self.settings.controller_id
        snap.policies = list(self.policy_names)
        return snap

    def _stamp_actions(self, snap: PolicySnapshot, now: float) -> None:
        """One-shot actions get an id that receivers apply once, and stay in snapshots for
        `action_ttl_s` (a controller that skips a revision still sees them); the same action
        emitted again meanwhile keeps its id."""
        for kind in ("migrations", "provisions", "releases"):
            for action in getattr(snap, kind):
                key = kind + json.dumps(action, sort_keys=True)
                if key not in self._actions:
                    self._action_seq += 1
                    self._actions[key] = (f"{self.settings.controller_id}-{self._action_seq}",
                                          now, dict(action))
        for key, (_, first, _) in list(self._actions.items()):
            if now - first > self.settings.action_ttl_s:
                del self._actions[key]
        for kind in ("migrations", "provisions", "releases"):
            setattr(snap, kind, [{**action, "id": aid} for key, (aid, _, action)
                                 in sorted(self._actions.items(), key=lambda kv: kv[1][0])
                                 if key.startswith(kind)])

    async def _reload(self, kv: KeyValue) -> None:
        """Policies set at run time (`PUT /v1/policy`) replace the configured ones; a config
        that does not load, or names a class that is not allowed (written to the bucket by
        something other than the gateway), is logged and the running policies stay."""
        try:
            entry = await kv.get(self.names.CONFIG_KEY)
        except KeyNotFoundError:
            return
        if entry.revision == self._config_rev or not entry.value:
            return
        self._config_rev = entry.revision or 0
        try:
            specs = parse_specs(json.loads(entry.value)["policies"])
            self.policies = load_policies(specs, self.allowed)
            self.policy_names = [describe(s) for s in specs]
            self._last_write = 0.0  # write a snapshot from the new policies now
            log.info("policy.reloaded", policies=specs, revision=entry.revision)
        except PolicyNotAllowed as exc:
            log.error("policy.refused", policy=exc.name, revision=entry.revision,
                      kept=self.policy_names, error=str(exc))
        except Exception as exc:
            log.error("policy.reload_failed", revision=entry.revision, error=str(exc),
                      kept=self.policy_names)

    async def tick(self, kv: KeyValue) -> None:
        await self._reload(kv)
        # the policies run off the event loop: telemetry and the views stay served meanwhile
        snap = await asyncio.to_thread(self.compute, self.state())
        bad, self._unreadable = self._unreadable, []
        for subject, data, why in bad:
            await dead_letter(self.bus, service="global-controller", subject=subject,
                              data=data, headers=None, reason=f"unreadable telemetry: {why}")
        if snap.same_decisions(self.last) and snap.policies == (self.last.policies
                                                                 if self.last else None) and \
                time.time() - self._last_write < self.settings.refresh_s:
            return
        try:
            entry = await kv.get(self.names.POLICY_KEY)
            revision = await kv.update(self.names.POLICY_KEY, snap.encode(), last=entry.revision)
        except KeyNotFoundError:
            revision = await kv.create(self.names.POLICY_KEY, snap.encode())
        except KeyWrongLastSequenceError:
            log.info("global_controller.snapshot_conflict")
            return
        snap.revision = revision
        self.last = snap
        self._last_write = time.time()
        log.debug("policy.written", revision=revision)
