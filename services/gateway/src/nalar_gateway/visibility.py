"""What a caller may see: a principal sees its own tenant's runs and sessions (admins see
all), server tracebacks (with their file paths) only when it is an admin, and which sessions
the control plane is steering (session ids of every tenant) only when it is an admin."""

from __future__ import annotations

from typing import Any

from nalar_common.auth import Principal

ADMIN_ROLE = "admin"
_PRIVATE_DETAILS = ("traceback",)  # server file paths and code: admins only


def is_admin(principal: Principal) -> bool:
    return ADMIN_ROLE in principal.roles


def sees(principal: Principal, tenant: str | None) -> bool:
    """Whether `principal` may see something of `tenant` (None: of no known tenant)."""
    return is_admin(principal) or (tenant is not None and tenant == principal.tenant)


def scrub_error(error: Any) -> Any:
    """An error as a non-admin sees it: without server tracebacks."""
    if not isinstance(error, dict) or not isinstance(error.get("details"), dict):
        return error
    details = {k: v for k, v in error["details"].items() if k not in _PRIVATE_DETAILS}
    return {**error, "details": details}


def scrub(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """A run view, future row or journal event as `principal` may see it."""
    if is_admin(principal) or not isinstance(row.get("error"), dict):
        return row
    return {**row, "error": scrub_error(row["error"])}


def scrub_all(rows: list[dict[str, Any]], principal: Principal) -> list[dict[str, Any]]:
    return rows if is_admin(principal) else [scrub(r, principal) for r in rows]


def cluster_for(cluster: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The cluster view without session ids (routes, priorities, migrations of sessions) for
    a non-admin: counts instead."""
    if is_admin(principal) or not isinstance(cluster.get("policy"), dict):
        return cluster
    return {**cluster, "policy": snapshot_for(cluster["policy"], principal)}


_SESSION_FIELDS = ("sessions", "priorities", "agent_priorities", "migrations")


def snapshot_for(snapshot: Any, principal: Principal) -> Any:
    """A policy snapshot as a non-admin sees it: how many sessions each decision names, not
    which."""
    if is_admin(principal) or not isinstance(snapshot, dict):
        return snapshot
    out = dict(snapshot)
    for field in _SESSION_FIELDS:
        if isinstance(out.get(field), dict | list):
            out[field] = {"count": len(out[field]), "hidden": "session ids are shown to admins"}
    if isinstance(out.get("affinity"), dict | list):
        out["affinity"] = len(out["affinity"])
    return out


def config_for(config: Any, principal: Principal) -> Any:
    """The stored policy config (`PUT /v1/policy`) as a non-admin sees it: the classes, not
    their params (which may name sessions, as SessionPriority's do)."""
    if is_admin(principal) or not isinstance(config, dict):
        return config
    specs = config.get("policies")
    if not isinstance(specs, list):
        return {"policies": []}
    return {"policies": [s if isinstance(s, str) else {"class": s.get("class"),
                                                         "params": "shown to admins"}
                         if isinstance(s, dict) else None for s in specs]}
