"""Session collection: a session is forgotten, its managed state with it, once its newest run
is older than the session TTL (by default the journal's retention, so a session lives as long
as the record of its last run). Sessions registered with a TTL sit in a Redis sorted set by
due time (`session_index_key`); several state stores may run, and `ZREM` decides which one
collects a session.

Why collected and not a Redis TTL: state written during a run can create keys (a new agent's
state) that a TTL set when the run was registered would not cover; they would outlive the
session's registry entry, and the next tenant to claim that session id would read them. The
collector deletes the registry and the state in one script, after checking that the session
is still due (a run registered since keeps it) and that no call holds its state.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nalar_common.logging import get_logger
from nalar_common.state import SessionStore, session_index_key

log = get_logger(__name__)

COLLECTED, NOT_DUE, AGENTS_CHANGED, IN_USE = 1, 0, -1, -2
IN_USE_RETRY_S = 60.0

# KEYS: meta, runs, agents, then state, ops and lease of each agent. ARGV: now, ttl.
# Epochs (`epoch:<agent>`) stay, as with `end_session`: fencing never goes back.
_COLLECT = """
local seen = tonumber(redis.call('HGET', KEYS[1], 'last_seen') or '')
if not seen then return {0, ''} end
local due = seen + tonumber(ARGV[2])
if due > tonumber(ARGV[1]) then return {0, string.format('%.6f', due)} end
if redis.call('SCARD', KEYS[3]) ~= (#KEYS - 3) / 3 then return {-1, ''} end
for i = 6, #KEYS, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then return {-2, ''} end
end
redis.call('DEL', unpack(KEYS))
return {1, ''}
"""


class SessionCollector:
    BATCH = 100

    def __init__(self, store: SessionStore, ttl_s: float | None, interval_s: float) -> None:
        self.store, self.ttl_s, self.interval_s = store, ttl_s, interval_s
        self.key = session_index_key(store.names)
        self.collected = 0
        self._script = store.r.register_script(_COLLECT)

    async def run(self) -> None:
        if self.ttl_s is None:
            return  # sessions are kept until `DELETE /v1/sessions/{id}`
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.collect_due()
            except Exception as exc:  # Redis away: try again next tick
                log.warning("sessions.collect_failed", error=str(exc))

    async def collect_due(self, now: float | None = None) -> int:
        """Collect the sessions due at `now`; the number collected."""
        if self.ttl_s is None:
            return 0
        now = time.time() if now is None else now
        r = self.store.r
        due: Any = await r.zrangebyscore(self.key, "-inf", now, start=0, num=self.BATCH)
        collected = 0
        for raw in due:
            session = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not await r.zrem(self.key, session):
                continue  # another state store took it
            try:
                outcome, later = await self._collect(session, now)
            except Exception as exc:
                log.warning("session.collect_failed", session_id=session, error=str(exc))
                outcome, later = IN_USE, now + 1.0
            if outcome == COLLECTED:
                collected += 1
                log.info("session.collected", session_id=session)
            elif later is not None:  # a newer run keeps it, or a call holds its state
                await r.zadd(self.key, {session: later}, gt=True)
        self.collected += collected
        return collected

    async def _collect(self, session: str, now: float) -> tuple[int, float | None]:
        k = self.store.names.session_key
        for _ in range(3):
            members: Any = await self.store.r.smembers(k(session, "agents"))
            keys = [k(session, "meta"), k(session, "runs"), k(session, "agents")]
            for agent in sorted(m.decode() for m in members):
                keys += [k(session, f"state:{agent}"), k(session, f"ops:{agent}"),
                         k(session, f"lease:{agent}")]
            outcome, due = await self._script(keys=keys, args=[repr(now), repr(self.ttl_s)])
            outcome = int(outcome)
            if outcome == AGENTS_CHANGED:
                continue  # an agent wrote its first state meanwhile: list them again
            if outcome == IN_USE:
                return outcome, now + IN_USE_RETRY_S
            if outcome == NOT_DUE and due:
                return outcome, float(due)
            return outcome, None  # collected, or not registered (ended) any more
        return AGENTS_CHANGED, now + 1.0
