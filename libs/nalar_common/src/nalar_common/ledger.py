"""The idempotency ledger: the recorded result of each side effect, keyed by the future that
made it and the operation's name, so that a retried or re-run call returns what the first one
did instead of doing it again.

One record per key in Redis (hash-tagged per run): `result` once an attempt finished, `tries`
(how many attempts began), and a claim `owner` with a TTL while an attempt runs. An attempt
that finds a live claim of another one waits for it (the other may be a superseded copy still
running); a claim whose owner died expires, and the next attempt runs the operation again,
knowing from `tries > 1` that an earlier one may have begun it: the key it passes to an
external API lets that API drop the repeat.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from nalar_common.envelope import pack, unpack
from nalar_common.errors import Unavailable
from nalar_common.subjects import Names

_BEGIN = """
local result = redis.call('HGET', KEYS[1], 'result')
if result then return {'done', result} end
local claim = redis.call('GET', KEYS[2])
if claim and claim ~= ARGV[1] then return {'busy', claim} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'new', tostring(tries)}
"""

_FINISH = """
local result = redis.call('HGET', KEYS[1], 'result')
if result then redis.call('DEL', KEYS[2]) return {'done', result} end
redis.call('HSET', KEYS[1], 'result', ARGV[2], 'owner', ARGV[1], 'at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return {'new', ARGV[2]}
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Begun:
    """What `begin` found: the recorded value (`done`), or a claim to run it (`tries`: this
    attempt's number; above 1, an earlier attempt may have begun the operation)."""

    done: bool
    value: Any = None
    tries: int = 0


LEDGER_TTL_S = 7 * 24 * 3600
"""How long a call's idempotency record is kept: runs may not last longer (the gateway caps
their `timeout_s`), or a retry after it would run a `once` block again."""


class Ledger:
    """Idempotency records in Redis; one per process, shared by every call it runs."""

    def __init__(self, client: aioredis.Redis, names: Names, *, ttl_s: int = LEDGER_TTL_S,
                 claim_ttl_ms: int = 10_000, wait_s: float = 300.0) -> None:
        self.r, self.names = client, names
        self.ttl_s, self.claim_ttl_ms, self.wait_s = ttl_s, claim_ttl_ms, wait_s
        self._begin = client.register_script(_BEGIN)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.stats = {"recorded": 0, "replayed": 0, "waited": 0}

    def keys(self, run: str, key: str) -> list[str]:
        return [self.names.redis("ledger", "{" + run + "}", key),
                self.names.redis("ledger", "{" + run + "}", key, "claim")]

    async def begin(self, run: str, key: str, owner: str) -> Begun:
        """The recorded result, or a claim for `owner` to run the operation; waits while
        another attempt holds a live claim."""
        keys = self.keys(run, key)
        deadline = time.monotonic() + self.wait_s
        waited = False
        while True:
            state, data = await self._begin(keys=keys, args=[owner, self.claim_ttl_ms,
                                                             self.ttl_s])
            state = state.decode() if isinstance(state, bytes) else state
            if state == "done":
                self.stats["replayed"] += 1
                return Begun(True, unpack(data))
            if state == "new":
                return Begun(False, tries=int(data))
            if not waited:
                self.stats["waited"] += 1
                waited = True
            if time.monotonic() > deadline:
                raise Unavailable(f"operation {key} of run {run} is still held by another "
                                  f"attempt after {self.wait_s:.0f}s", details={"key": key})
            await asyncio.sleep(0.1)

    async def renew(self, run: str, key: str, owner: str) -> bool:
        return bool(await self._renew(keys=self.keys(run, key)[1:],
                                      args=[owner, self.claim_ttl_ms]))

    async def finish(self, run: str, key: str, owner: str, value: Any) -> Any:
        """Record `value`; if another attempt recorded one first, that one is the result."""
        _, data = await self._finish(keys=self.keys(run, key),
                                         args=[owner, pack(value), self.ttl_s, time.time()])
        self.stats["recorded"] += 1
        return unpack(data)

    async def abandon(self, run: str, key: str, owner: str) -> None:
        """The attempt failed without a result: free the claim so a retry runs at once."""
        await self._release(keys=self.keys(run, key)[1:], args=[owner])

    async def read(self, run: str, key: str) -> dict[str, Any] | None:
        """The record as stored (for tests and operators)."""
        raw = await self.r.hgetall(self.keys(run, key)[0])
        if not raw:
            return None
        out: dict[str, Any] = {(k.decode() if isinstance(k, bytes) else k): v
                               for k, v in raw.items()}
        out["tries"] = int(out.get("tries", 0))
        if "result" in out:
            out["result"] = unpack(out["result"])
        return out
