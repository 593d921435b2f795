"""The operator surface of the gateway: the running policy snapshot and its history, the
policies to run (`PUT /v1/policy`: allow-listed classes only), and the cluster as the
gateway sees it. What a non-admin may see of these is cut in `visibility.py`."""

from __future__ import annotations

import json
from typing import Any

from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView
from nalar_common.errors import InvalidInput
from nalar_common.logging import get_logger
from nalar_common.policyspec import PolicyAllowList, PolicyNotAllowed, load_policy
from nats.js.errors import KeyNotFoundError

log = get_logger(__name__)


class Operations:
    def __init__(self, bus: Bus, view: ClusterView, policy_classes: PolicyAllowList) -> None:
        """`policy_classes`: what `PUT /v1/policy` may name (the global controller is given
        the same list from the same settings)."""
        self.bus, self.view, self.policy_classes = bus, view, policy_classes

    async def policy(self) -> dict[str, Any]:
        kv = await self.bus.kv(self.bus.names.policy_bucket, history=10)
        out: dict[str, Any] = {"snapshot": None, "revision": None, "config": None,
                               "leader": None}
        for key, field_ in ((self.bus.names.POLICY_KEY, "snapshot"),
                            (self.bus.names.CONFIG_KEY, "config"),
                            (self.bus.names.LEADER_KEY, "leader")):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue
            if entry.value:
                out[field_] = json.loads(entry.value)
                if field_ == "snapshot":
                    out["revision"] = entry.revision
        return out

    async def policy_history(self) -> list[dict[str, Any]]:
        kv = await self.bus.kv(self.bus.names.policy_bucket, history=10)
        try:
            entries = await kv.history(self.bus.names.POLICY_KEY)
        except Exception:
            return []
        return [{"revision": e.revision, "snapshot": json.loads(e.value)}
                for e in entries if e.value]

    async def set_policy(self, specs: Any) -> dict[str, Any]:
        """Validate the policies here (on the allow-list, params as the class declares them,
        instantiate, `decide`), then store them; the active global controller switches at its
        next tick. A bad one, or one naming a class that is not allowed (nothing of it is
        imported), is a 422 and nothing changes."""
        if not isinstance(specs, list) or not specs:
            raise InvalidInput('body must be {"policies": ["module:Class" or {"class": '
                               '"module:Class", "params": {...}}, ...]}',
                               details={"errors": [{"field": "policies",
                                                    "message": "a non-empty list"}]})
        for i, spec in enumerate(specs):
            try:
                load_policy(spec, self.policy_classes)
            except Exception as exc:
                if isinstance(exc, PolicyNotAllowed):
                    log.warning("policy.refused", policy=exc.name)
                raise InvalidInput(f"policy {spec!r} cannot be used: {exc}", details={
                    "errors": [{"field": f"policies[{i}]", "message": str(exc)}]}) from None
        kv = await self.bus.kv(self.bus.names.policy_bucket, history=10)
        revision = await kv.put(self.bus.names.CONFIG_KEY,
                                json.dumps({"policies": specs}).encode())
        return {"config": {"policies": specs}, "revision": revision}

    def cluster(self) -> dict[str, Any]:
        view = self.view
        instances = [dict(vars(i)) for i in sorted(view.live(), key=lambda i: i.instance)]
        nodes: dict[str, dict[str, Any]] = {}
        for i in instances:
            n = nodes.setdefault(i["node"], {"instances": 0, "inflight": 0, "agents": set()})
            n["instances"] += 1
            n["inflight"] += i["inflight"]
            n["agents"].add(i["agent"])
        snap = view.snapshot
        return {"nodes": {k: {**v, "agents": sorted(v["agents"])} for k, v in nodes.items()},
                "instances": instances,
                "policy": {"revision": snap.revision, "policies": snap.policies,
                           "routes": snap.routes, "sessions": snap.sessions,
                           "affinity": len(snap.affinity), "priorities": snap.priorities,
                           "migrations": snap.migrations, "provisions": snap.provisions,
                           "releases": snap.releases} if snap else None}
