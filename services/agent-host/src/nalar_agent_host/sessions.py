"""Managed state around one agent call: take the (session, agent) lease, load the state, and
after the call commit it fenced and deduplicated, or discard it; release the lease either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from nalar.hosting import CallState
from nalar_common.errors import LeaseLost as LeaseLost
from nalar_common.errors import StateConflict as StateConflict
from nalar_common.errors import Unavailable
from nalar_common.logging import get_logger
from nalar_common.state import Lease, SessionStore, WriteOutcome, redis_unavailable

log = get_logger(__name__)


class SessionStates:
    def __init__(self, store: SessionStore, *, lease_ttl_ms: int = 10_000,
                 wait_s: float = 60.0) -> None:
        self.store = store
        self.ttl_ms = lease_ttl_ms
        self.wait_s = wait_s

    async def _acquire(self, session: str, agent: str, owner: str, instance: str) -> Lease:
        """Wait (with backoff) while another call of the session holds this agent's state."""
        delay = 0.005
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            lease = await self.store.acquire(session, owner, self.ttl_ms, agent=agent,
                                             instance=instance)
            if lease is not None:
                return lease
            if loop.time() > deadline:
                raise Unavailable(f"state of {agent} in session {session} stayed busy for "
                                  f"{self.wait_s:.0f}s", details={"agent": agent})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def _renew(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                renewed = await self.store.renew(lease, self.ttl_ms)
            except Exception:  # Redis away for a moment: the commit's fencing decides
                continue
            if not renewed:
                log.warning("state.lease_lost", session_id=lease.session, agent=lease.agent)
                return

    @contextlib.asynccontextmanager
    async def hold(self, session: str, agent: str, owner: str,
                   instance: str = "") -> AsyncIterator[tuple[CallState, Lease]]:
        """The call's state under its lease (renewed meanwhile, released at the end). The
        caller commits it with `commit` when the call succeeded; otherwise it is dropped.
        `instance` takes over a lease a migration reserved for it."""
        with redis_unavailable(f"state of {agent}"):
            lease = await self._acquire(session, agent, owner, instance)
        renewer = asyncio.create_task(self._renew(lease))
        try:
            with redis_unavailable(f"state of {agent}"):
                values, version = await self.store.read_state(session, agent)
            yield CallState(values, version), lease
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            with contextlib.suppress(Exception):
                await self.store.release(lease)

    async def commit(self, state: CallState, lease: Lease, op_id: str) -> None:
        """Write the state if the call changed it: once per call id, only under our lease."""
        if not state.changed():
            return
        with redis_unavailable(f"state of {lease.agent}"):
            outcome, _ = await self.store.write_state(lease, op_id, state.values,
                                                      expected_version=state.version)
        if outcome == WriteOutcome.FENCED:
            raise LeaseLost(f"lost the state lease of {lease.agent} in session "
                            f"{lease.session}; this call's changes were not applied")
        if outcome == WriteOutcome.CONFLICT:
            raise StateConflict(f"state of {lease.agent} in session {lease.session} "
                                f"changed under this call")
