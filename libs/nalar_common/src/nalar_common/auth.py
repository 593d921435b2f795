"""Who a caller is: principals and API keys (hashed at rest in Redis).

The gateway authenticates every request (API keys here, JWTs in `nalar_gateway.auth`) and
stamps the run with the principal it found; nothing about identity is ever read from a
request body. Local controllers read the run's principal from where the gateway stored it,
not from the call.

An API key reads `nk_<id>_<secret>`: the id finds the record, the secret is compared by its
SHA-256 digest (the secret is 256 random bits, so a fast hash is enough; only the digest is
stored). `nalar keys create|ls|revoke` manage them (`KeyStore`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from nalar_common.errors import Unauthenticated
from nalar_common.subjects import Names

_KEY = re.compile(r"^nk_([a-z0-9]{12})_([A-Za-z0-9_\-]{20,128})\Z")
_NAME = re.compile(r"^[A-Za-z0-9_.@:\-]{1,128}\Z")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a name, roles and a tenant (`via`: how it was established)."""

    name: str
    roles: tuple[str, ...] = ()
    tenant: str = "default"
    via: str = "api_key"  # api_key | jwt | anonymous
    key_id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # other claims (JWT)

    def public(self) -> dict[str, Any]:
        """What a run view shows of who started it."""
        return {"name": self.name, "roles": list(self.roles), "tenant": self.tenant,
                "via": self.via}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["roles"] = list(self.roles)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        return cls(name=str(data.get("name", "")), roles=tuple(data.get("roles") or ()),
                   tenant=str(data.get("tenant") or "default"),
                   via=str(data.get("via") or "api_key"), key_id=data.get("key_id"),
                   attrs=dict(data.get("attrs") or {}))


def check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{kind} {value!r}: 1-128 letters, digits or _.@:-")
    return value


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """API keys in one Redis hash (`<prefix>:apikeys`): id -> record with the secret's digest."""

    def __init__(self, client: aioredis.Redis, names: Names) -> None:
        self.r, self.key = client, names.redis("apikeys")

    async def create(self, name: str, roles: list[str], tenant: str = "default") -> str:
        """A new key for `name`; returns it in full (shown once: only its digest is kept)."""
        check_name("name", name)
        check_name("tenant", tenant)
        for role in roles:
            check_name("role", role)
        key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                         for _ in range(12))
        secret = secrets.token_urlsafe(32)
        record = {"id": key_id, "name": name, "roles": sorted(set(roles)), "tenant": tenant,
                  "digest": _digest(secret), "created_at": time.time(), "revoked_at": None}
        if not await self.r.hsetnx(self.key, key_id, json.dumps(record)):
            raise ValueError(f"key id {key_id} exists")
        return f"nk_{key_id}_{secret}"

    async def list(self) -> list[dict[str, Any]]:
        rows = [json.loads(v) for v in (await self.r.hgetall(self.key)).values()]
        for row in rows:
            row.pop("digest", None)
        return sorted(rows, key=lambda r: r["created_at"])

    async def revoke(self, key_id: str) -> bool:
        raw = await self.r.hget(self.key, key_id)
        if raw is None:
            return False
        record = json.loads(raw)
        if record.get("revoked_at") is None:
            record["revoked_at"] = time.time()
            await self.r.hset(self.key, key_id, json.dumps(record))
        return True

    async def verify(self, key: str) -> Principal:
        m = _KEY.match(key)
        raw = await self.r.hget(self.key, m.group(1)) if m else None
        record = json.loads(raw) if raw else None
        if m is None or record is None or \
                not hmac.compare_digest(record["digest"], _digest(m.group(2))):
            raise Unauthenticated("invalid API key")
        if record.get("revoked_at") is not None:
            raise Unauthenticated("API key revoked", details={"key_id": record["id"]})
        return Principal(record["name"], tuple(record["roles"]), record["tenant"], "api_key",
                         record["id"])
