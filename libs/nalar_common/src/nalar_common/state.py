"""Redis client for sessions: registry, leases with fencing tokens, fenced state writes.

Keys are hash-tagged per session (`nalar:{S}:...`) so Redis Cluster keeps a session in one
slot. A lease token is `owner|epoch` with the epoch from `INCR`; every state write goes through
one Lua script that checks the token, the version and the operation id (tech.md B.2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from nalar_common.envelope import pack, unpack
from nalar_common.errors import Unavailable
from nalar_common.redisclient import redis_client
from nalar_common.subjects import Names

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local owner = string.match(cur, '^(.*)|')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.match(cur, '|(%d+)$'))
  end
  if ARGV[3] ~= '' and owner == 'reserved:' .. ARGV[3] then
    local epoch = string.match(cur, '|(%d+)$')
    redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[2])
    return tonumber(epoch)
  end
  return -redis.call('PTTL', KEYS[1])
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[2])
return epoch
"""

_TRANSFER = """
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], 'reserved:' .. ARGV[1] .. '|' .. epoch, 'PX', ARGV[2])
return epoch
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1, 0} end
if redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 1 then
  return {2, tonumber(redis.call('HGET', KEYS[2], 'ver') or '0')}
end
local ver = tonumber(redis.call('HGET', KEYS[2], 'ver') or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= ver then return {-2, ver} end
local epoch = string.match(ARGV[1], '|(%d+)$')
redis.call('HSET', KEYS[2], 'ver', ver + 1, 'fence', epoch, 'data', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('SADD', KEYS[4], ARGV[5])
return {1, ver + 1}
"""


_SWAP = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return ARGV[2]
end
return cur
"""


_REGISTER = """
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[1], 'tenant', ARGV[4]) end
local seen = tonumber(redis.call('HGET', KEYS[1], 'last_seen') or '') or -1
local created = tonumber(ARGV[3])
if created >= seen then
  redis.call('HSET', KEYS[1], 'last_run', ARGV[1], 'last_seen', ARGV[3])
  seen = created
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1] .. '|' .. ARGV[2])
if ARGV[5] ~= '' then  -- runs whose journal is gone leave the list
  local cutoff = string.format('(%.6f', seen - tonumber(ARGV[5]))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
end
return 1
"""


def session_index_key(names: Names) -> str:
    """Sorted set of sessions under a TTL by when they are due (newest run + TTL): what the
    state store's collector walks. (It replaces the set `nalar:sessions`, which nothing
    read and nothing trimmed.)"""
    return names.redis("sessions", "expiry")


@contextlib.contextmanager
def redis_unavailable(what: str) -> Iterator[None]:
    """Turn Redis being away (a restart, a network cut) into `Unavailable`, which retry
    policies retry, instead of an error that fails the call for good."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            ConnectionError, TimeoutError) as exc:
        raise Unavailable(f"{what}: Redis is unavailable ({exc})",
                          details={"type": type(exc).__name__}) from exc


class WriteOutcome:
    APPLIED = 1
    DUPLICATE = 2
    FENCED = -1
    CONFLICT = -2


@dataclass(frozen=True, slots=True)
class Lease:
    """Ownership of one agent's state in one session: `owner|epoch`, the fencing token."""

    session: str
    owner: str
    epoch: int
    agent: str = ""

    @property
    def token(self) -> str:
        return f"{self.owner}|{self.epoch}"


class SessionStore:
    """Session registry and fenced state in Redis; one instance per process."""

    def __init__(self, client: aioredis.Redis, names: Names) -> None:
        self.r = client
        self.names = names
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._write = client.register_script(_WRITE)
        self._swap = client.register_script(_SWAP)
        self._transfer = client.register_script(_TRANSFER)
        self._register = client.register_script(_REGISTER)

    @classmethod
    def from_url(cls, url: str, names: Names) -> SessionStore:
        return cls(redis_client(url), names)

    async def close(self) -> None:
        await self.r.aclose()

    # -- registry ------------------------------------------------------------
    async def register_run(self, session: str, run: str, workflow: str, created_at: float,
                           tenant: str | None = None, ttl_s: float | None = None) -> None:
        """Record a run in its session's registry. `tenant`: whose session it is (set by its
        first run; the gateway keeps other tenants out of it). `ttl_s` (the state store
        passes it): the session, its state included, is collected `ttl_s` after its newest
        run (nalar_state_store.sessions), and runs older than that leave its list; without
        it the session stays until `end_session` (or until a run registers it with one).
        Runs may be registered out of order: `last_run`/`last_seen` only move forward."""
        if ttl_s is not None and ttl_s > 0:
            # indexed before it is written: a session never exists without its index entry
            await self.r.zadd(session_index_key(self.names), {session: created_at + ttl_s},
                              gt=True)
        await self._register(keys=[self.names.session_key(session, "meta"),
                           self.names.session_key(session, "runs")],
                     args=[run, workflow, repr(float(created_at)), tenant or "",
                           repr(float(ttl_s)) if ttl_s is not None and ttl_s > 0 else ""])

    async def claim_session(self, session: str, tenant: str) -> str:
        """The tenant a session belongs to: `tenant` if it had none yet (the first run of a
        session claims it, atomically: two tenants racing for a new id cannot share it)."""
        meta = self.names.session_key(session, "meta")
        async with self.r.pipeline(transaction=True) as p:
            p.hsetnx(meta, "tenant", tenant)
            p.hget(meta, "tenant")
            _, owner = await p.execute()
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def session_tenant(self, session: str) -> tuple[bool, str | None]:
        """(whether the session exists, the tenant it belongs to)."""
        meta: Any = await self.r.hmget(self.names.session_key(session, "meta"),
                                       ["created_at", "tenant"])
        return meta[0] is not None, meta[1].decode() if meta[1] is not None else None

    async def session(self, session: str) -> dict[str, Any] | None:
        """Runs, agents with state (and their versions), and who holds each agent's lease."""
        k = self.names.session_key
        meta: Any = await self.r.hgetall(k(session, "meta"))
        if not meta:
            return None
        runs: Any = await self.r.zrange(k(session, "runs"), 0, -1, withscores=True)
        members: Any = await self.r.smembers(k(session, "agents"))
        agents = sorted(a.decode() for a in members)
        listed = []
        for member, score in runs:
            run_id, _, workflow = member.decode().partition("|")
            listed.append({"run_id": run_id, "workflow": workflow, "created_at": score})
        state = []
        for agent in agents:
            ver: Any = await self.r.hget(k(session, f"state:{agent}"), "ver")
            holder: Any = await self.r.get(k(session, f"lease:{agent}"))
            state.append({"agent": agent, "version": int(ver or 0),
                          "lease": holder.decode() if holder else None})
        return {
            "session_id": session,
            "tenant": meta[b"tenant"].decode() if b"tenant" in meta else None,
            "created_at": float(meta.get(b"created_at", 0)),
            "last_seen": float(meta.get(b"last_seen", 0)),
            "runs": listed,
            "agents": state,
        }

    async def end_session(self, session: str) -> bool:
        """Forget a session and free its state; epochs stay, so fencing never goes back."""
        k = self.names.session_key
        if not await self.r.exists(k(session, "meta")):
            return False
        members: Any = await self.r.smembers(k(session, "agents"))
        agents = [a.decode() for a in members]
        keys = [k(session, "meta"), k(session, "runs"), k(session, "agents")]
        for agent in agents:
            keys += [k(session, f"state:{agent}"), k(session, f"ops:{agent}"),
                     k(session, f"lease:{agent}")]
        async with self.r.pipeline(transaction=True) as p:
            p.delete(*keys)
            p.srem(self.names.redis("sessions"), session)
            await p.execute()
        return True

    # -- idempotency of run admission ----------------------------------------
    async def claim_idempotency_key(self, tenant: str, key: str, run: str,
                                    ttl_s: int = 86_400) -> str:
        """Map `key` to `run` unless already mapped; returns the run the key stands for."""
        k = self.names.idempotency_key(tenant, key)
        if await self.r.set(k, run, nx=True, ex=ttl_s):
            return run
        existing: Any = await self.r.get(k)
        return existing.decode() if existing else run

    async def replace_idempotency_key(self, tenant: str, key: str, old: str, new: str,
                                      ttl_s: int = 86_400) -> str:
        """Point `key` at `new` if it still names `old`; returns the run it names after."""
        owner = await self._swap(keys=[self.names.idempotency_key(tenant, key)],
                                 args=[old, new, ttl_s])
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    # -- leases ----------------------------------------------------------------
    # One lease per (session, agent): calls of a session on different agents never wait for
    # each other; calls on the same agent's state are serialised and fenced.

    async def acquire(self, session: str, owner: str, ttl_ms: int = 5000,
                      agent: str = "", instance: str = "") -> Lease | None:
        """Take (or extend, if already ours) the lease; None while another holds it. A lease
        reserved for `instance` by a migration (`transfer`) is taken over."""
        k = self.names.session_key
        epoch = int(await self._acquire(keys=[k(session, f"lease:{agent}"),
                                              k(session, f"epoch:{agent}")],
                                        args=[owner, ttl_ms, instance]))
        return Lease(session, owner, epoch, agent) if epoch > 0 else None

    async def transfer(self, session: str, agent: str, instance: str,
                       ttl_ms: int = 10_000) -> int:
        """Migration: move the (session, agent) lease to `instance` whoever holds it now. The
        epoch goes up, so a late write from the old owner is fenced; the next call of the
        session on `instance` takes the reservation over (others wait until it expires)."""
        k = self.names.session_key
        return int(await self._transfer(keys=[k(session, f"lease:{agent}"),
                                              k(session, f"epoch:{agent}")],
                                        args=[instance, ttl_ms]))

    async def renew(self, lease: Lease, ttl_ms: int = 5000) -> bool:
        key = self.names.session_key(lease.session, f"lease:{lease.agent}")
        return bool(await self._renew(keys=[key], args=[lease.token, ttl_ms]))

    async def release(self, lease: Lease) -> bool:
        key = self.names.session_key(lease.session, f"lease:{lease.agent}")
        return bool(await self._release(keys=[key], args=[lease.token]))

    async def write_state(self, lease: Lease, op_id: str, value: Any,
                          expected_version: int | None = None,
                          ops_ttl_s: int = 7 * 86_400) -> tuple[int, int]:
        """Fenced, versioned, idempotent write of the agent's whole state: returns
        (WriteOutcome, version). `op_id` is attempt-independent, so a retried call's write
        is recognised as a duplicate and not applied twice."""
        s, a, k = lease.session, lease.agent, self.names.session_key
        outcome, ver = await self._write(
            keys=[k(s, f"lease:{a}"), k(s, f"state:{a}"), k(s, f"ops:{a}"), k(s, "agents")],
            args=[lease.token, "" if expected_version is None else expected_version, op_id,
                  pack(value), a, ops_ttl_s])
        return int(outcome), int(ver)

    async def read_state(self, session: str, agent: str) -> tuple[Any, int]:
        row: Any = await self.r.hmget(self.names.session_key(session, f"state:{agent}"),
                                       ["data", "ver"])
        data, ver = row
        return (unpack(data) if data else None), int(ver or 0)
