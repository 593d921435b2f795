"""Guardrails enforced before the spend: before each agent call (`iterations`, `wall_s`) and
before each LLM request an agent makes (`tokens`, `cost`, `llm_calls`, `wall_s`), which its
agent host asks this node's controller about (`guard` requests) and settles afterwards.

Counting and checking happen in one Redis script, so calls running at once on any node
cannot together pass a limit: an LLM request reserves its worst case (its prompt plus
`max_tokens`, priced at the model's rates) and gives back what it did not use when it ends.
A limit lifted for a run (its `resume` signal, after a pause) still counts but no longer
binds that run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from nalar_common.guardrails import (
    LLM_MEASURES,
    RUN_TTL_S,
    Breach,
    GuardrailFile,
    Limit,
    counter_key,
    strongest,
    waived_key,
)
from nalar_common.subjects import DRIVER_AGENT, Names

from nalar_local_controller.runs import RunFacts

SESSION_TTL_S = 30 * 86400

# KEYS: one counter hash per limit, then the run's waived set and its seen set.
# ARGV: n, the call counted once (its future, or "" for an LLM request), then per limit:
# field, amount, max, name, ttl. Nothing is counted unless every unwaived limit has room;
# returns the breached limits' positions, each followed by its count before.
_CHECK_AND_COUNT = """
local n = tonumber(ARGV[1])
local once = ARGV[2]
local waived, seen = KEYS[n + 1], KEYS[n + 2]
if once ~= '' and redis.call('SISMEMBER', seen, once) == 1 then return {} end
local over = {}
for i = 1, n do
  local b = 2 + (i - 1) * 5
  local cur = tonumber(redis.call('HGET', KEYS[i], ARGV[b + 1]) or '0')
  if cur + tonumber(ARGV[b + 2]) > tonumber(ARGV[b + 3])
      and redis.call('SISMEMBER', waived, ARGV[b + 4]) == 0 then
    table.insert(over, i)
    table.insert(over, tostring(cur))
  end
end
if #over > 0 then return over end
for i = 1, n do
  local b = 2 + (i - 1) * 5
  redis.call('HINCRBYFLOAT', KEYS[i], ARGV[b + 1], ARGV[b + 2])
  local ttl = tonumber(ARGV[b + 5])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
if once ~= '' then
  redis.call('SADD', seen, once)
  redis.call('EXPIRE', seen, 604800)
end
return {}
"""


@dataclass(frozen=True)
class Reserved:
    """One counter an LLM request reserved (`[key, field, measure, amount]` on the wire)."""

    key: str
    field: str
    measure: str
    amount: float


class CallGuard:
    def __init__(self, r: aioredis.Redis, names: Names, file: GuardrailFile) -> None:
        self.r, self.names, self.file = r, names, file
        self._script = r.register_script(_CHECK_AND_COUNT)

    def limits(self, facts: RunFacts) -> tuple[Limit, ...]:
        return self.file.current().applying(facts.principal, facts.workflow)

    async def admit(self, facts: RunFacts, limits: tuple[Limit, ...], future: str,
                    agent: str, method: str, session: str) -> Breach | None:
        """Before an agent call: its run's wall time, and one more iteration of its agent
        (counted once per future, whatever its attempts); `limits`: those binding the run."""
        if not limits:
            return None
        breaches = await self._wall(limits, facts, session)
        counted = [lim for lim in limits if lim.counts(agent, method)] \
            if not agent.startswith("_") and agent != DRIVER_AGENT else []
        if counted and not breaches:  # a call stopped anyway is not counted
            over, _ = await self._count(counted, [1.0] * len(counted), facts, session,
                                        once=future, future=future)
            breaches += over
        return strongest(breaches)

    async def reserve(self, facts: RunFacts, session: str, model: str, prompt_tokens: int,
                      max_tokens: int, future: str = "") -> tuple[Breach | None, list[Reserved]]:
        """Before an LLM request of call `future`: room for its worst case under every
        token, cost and LLM call limit of the run (and of that call, for `execution`
        limits); (the breach that stops it, or None and what was reserved)."""
        limits = self.limits(facts)
        if not limits:
            return None, []
        breaches = await self._wall(limits, facts, session)
        counted = [lim for lim in limits if lim.measure in LLM_MEASURES]
        worst = prompt_tokens + max_tokens
        cost = self.file.current().price(model).cost(prompt_tokens, max_tokens)
        amounts = [float(worst) if lim.measure == "tokens" else cost
                   if lim.measure == "cost" else 1.0 for lim in counted]
        held: list[Reserved] = []
        if counted and not breaches:
            over, held = await self._count(counted, amounts, facts, session, future=future)
            breaches += over
        return strongest(breaches), held

    async def settle(self, held: list[Reserved], model: str, prompt_tokens: int,
                     completion_tokens: int, ok: bool) -> None:
        """An LLM request ended: count what it used instead of what it reserved (a failed
        request counts nothing)."""
        if not held:
            return
        price = self.file.current().price(model)
        used = {"tokens": float(prompt_tokens + completion_tokens),
                "cost": price.cost(prompt_tokens, completion_tokens), "llm_calls": 1.0}
        async with self.r.pipeline(transaction=False) as p:
            for h in held:
                delta = (used.get(h.measure, h.amount) if ok else 0.0) - h.amount
                if delta:
                    p.hincrbyfloat(h.key, h.field, delta)
            await p.execute()

    # -- internals -----------------------------------------------------------------------
    def _key(self, lim: Limit, facts: RunFacts, session: str, future: str = "") -> str:
        ident = {"run": facts.run, "session": session or facts.session,
                 "tenant": facts.principal.tenant,
                 "execution": f"{facts.run}.{future}"}[lim.scope]
        bucket = int(time.time() // lim.window_s) if lim.window_s else None
        return counter_key(self.names, lim.scope, ident, bucket)

    @staticmethod
    def _ttl(lim: Limit) -> int:
        if lim.window_s:
            return int(lim.window_s * 2) + 60
        return {"run": RUN_TTL_S, "session": SESSION_TTL_S, "tenant": 0,
                "execution": RUN_TTL_S}[lim.scope]

    async def _count(self, limits: list[Limit], amounts: list[float], facts: RunFacts,
                     session: str, once: str = "",
                     future: str = "") -> tuple[list[Breach], list[Reserved]]:
        keys = [self._key(lim, facts, session, future) for lim in limits]
        args: list[Any] = [len(limits), once]
        for lim, amount in zip(limits, amounts, strict=True):
            args += [lim.counter, repr(amount), repr(lim.max), lim.name, self._ttl(lim)]
        over: Any = await self._script(
            keys=[*keys, waived_key(self.names, facts.run),
                  self.names.redis("guard", "seen", facts.run)], args=args)
        breaches = [Breach(limits[int(over[i]) - 1], float(over[i + 1]),
                           amounts[int(over[i]) - 1]) for i in range(0, len(over), 2)]
        if breaches:
            return breaches, []
        return [], [Reserved(k, lim.counter, lim.measure, a)
                    for k, lim, a in zip(keys, limits, amounts, strict=True)]

    async def _wall(self, limits: tuple[Limit, ...], facts: RunFacts,
                    session: str) -> list[Breach]:
        walls = [lim for lim in limits if lim.measure == "wall_s"]
        if not walls:
            return []
        now, out = time.time(), []
        for lim in walls:
            start = facts.created_at if lim.scope == "run" else \
                await self._session_start(session or facts.session, facts.created_at)
            if now - start > lim.max and not await self.r.sismember(
                    waived_key(self.names, facts.run), lim.name):
                out.append(Breach(lim, now - start))
        return out

    async def _session_start(self, session: str, default: float) -> float:
        value: Any = await self.r.hget(self.names.session_key(session, "meta"), "created_at")
        return float(value) if value else default
