"""Waiting for futures: core subscriptions (one per run with awaited futures) plus a direct-get
backstop.

Never a JetStream consumer or KV watch per future (tech.md A.2). After a reconnect, every
pending future is re-checked with one batch direct get, since core subscriptions miss what was
published while disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from nalar_common.bus import Bus, StoredMsg
from nalar_common.envelope import Envelope
from nalar_common.errors import MalformedMessage, NalarError
from nalar_common.logging import get_logger
from nalar_common.subjects import Headers

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FutureResult:
    """A resolved future as stored in NALAR_FUTURES: status header plus the result envelope."""

    run: str
    future: str
    data: bytes
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.headers.get(Headers.STATUS) == "ok"

    def body(self) -> dict[str, Any]:
        return Envelope.decode(self.data, expect="result").body

    def value(self) -> Any:
        """The value, or raise the error it resolved to as its typed `NalarError`."""
        body = self.body()
        if body.get("status") == "ok":
            return body.get("value")
        error = body.get("error")
        if not isinstance(error, dict):
            raise MalformedMessage(f"future {self.future} resolved to an error without a body")
        raise NalarError.from_wire(error)

    def error(self) -> NalarError | None:
        if self.ok:
            return None
        try:
            self.value()
        except NalarError as exc:
            return exc
        return None


Callback = Callable[[FutureResult], None]


class _RunSub:
    __slots__ = ("idle_since", "pending", "sub")

    def __init__(self) -> None:
        self.pending = 0
        self.idle_since = 0.0
        self.sub: Subscription | None = None


IDLE_LINGER_S = 2.0
"""A run's subscription outlives its last pending future this long: a driver that waits on one
call after another keeps one SUB instead of a SUB and an UNSUB per call."""
MAX_IDLE_RUNS = 256
LOOK_AGAIN_S = (0.1, 0.9)


class FutureWaiter:
    """Calls back once per future when its result appears.

    One core subscription per run with awaited futures (`nalar.fut.<run>.>`), held while any of
    them is pending: only processes waiting on a run receive its results, and a busy driver
    pays one SUB per run instead of one per call.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._pending: dict[tuple[str, str], list[Callback]] = {}
        self._runs: dict[str, _RunSub] = {}
        self._idle: dict[str, _RunSub] = {}  # runs with a subscription and nothing pending
        self._last_sweep = 0.0
        self._young: list[tuple[float, tuple[str, str]]] = []
        self._young_task: asyncio.Task[None] | None = None
        bus.on_reconnect(self.recheck)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def watch(self, run: str, future: str, callback: Callback, *,
                    check_stored: bool = True) -> None:
        """Subscribe (if needed) then, with `check_stored`, look the result up in the stream.

        A caller that starts watching *before* publishing the call that produces the future can
        skip the backstop: the server handles the SUB before the PUB on one connection.
        """
        key = (run, future)
        callbacks = self._pending.get(key)
        if callbacks is not None:
            callbacks.append(callback)
            return
        rs = self._runs.get(run)
        while rs is None:
            mine = _RunSub()
            mine.sub = await self._bus.nc.subscribe(self._bus.names.futures_of_run(run),
                                                    cb=self._on_msg)
            rs = self._runs.setdefault(run, mine)
            if rs is not mine:  # another watcher subscribed meanwhile: use theirs
                await mine.sub.unsubscribe()
                rs = self._runs.get(run)  # (unless `forget` dropped it meanwhile: again)
        rs.pending += 1
        self._idle.pop(run, None)
        self._pending[key] = [callback]
        if check_stored:
            try:
                stored = await self._bus.direct_get_last(self._bus.names.futures_stream,
                                                         self._bus.names.future(run, future))
            except Exception as exc:  # the subscription (and later rechecks) still cover it
                log.warning("future.backstop_failed", run_id=run, future_id=future,
                            error=str(exc))
                stored = None
            if stored is not None:
                self._deliver(key, stored.data, stored.headers)
                await self._release_idle(run)
            else:
                self._look_again(key)

    def _look_again(self, key: tuple[str, str]) -> None:
        """A result published just before our SUB reached the server, and not yet stored by
        the stream when the direct get ran, would be seen by neither: look again shortly
        (JetStream stores asynchronously, within milliseconds)."""
        self._young.append((time.monotonic(), key))
        if self._young_task is None or self._young_task.done():
            self._young_task = asyncio.get_running_loop().create_task(self._recheck_young())

    async def _recheck_young(self) -> None:
        """Batch direct gets for recent watches still pending, at ~0.1 s and ~1 s of age."""
        for delay in LOOK_AGAIN_S:
            await asyncio.sleep(delay)
            keys = [k for _, k in self._young if k in self._pending]
            if keys:
                await self._lookup(keys)
        cutoff = time.monotonic() - sum(LOOK_AGAIN_S)
        self._young = [(t, k) for t, k in self._young if t > cutoff and k in self._pending]
        if self._young:
            self._young_task = asyncio.get_running_loop().create_task(self._recheck_young())

    async def _lookup(self, keys: list[tuple[str, str]]) -> int:
        names = self._bus.names
        subjects = {names.future(r, f): (r, f) for r, f in keys}
        try:
            found = await self._bus.multi_last(names.futures_stream, subjects)
        except Exception as exc:
            log.warning("future.recheck_failed", pending=len(subjects), error=str(exc))
            return 0
        for subject, stored in found.items():
            self._deliver(subjects[subject], stored.data, stored.headers)
        for run in {r for r, _ in subjects.values()}:
            await self._release_idle(run)
        return len(found)

    async def check(self, run: str, future: str) -> None:
        """Look a pending future up in the stream now (its result may predate our watch)."""
        if (run, future) in self._pending:
            await self._lookup([(run, future)])

    async def get(self, run: str, future: str) -> FutureResult | None:
        """The stored result, if the future has resolved."""
        stored = await self._bus.direct_get_last(self._bus.names.futures_stream,
                                                 self._bus.names.future(run, future))
        return None if stored is None else _result(run, future, stored)

    async def forget(self, run: str, which: Callable[[str], bool]) -> int:
        """Stop awaiting the run's pending futures that `which` picks (their callbacks are
        dropped, never called); the run's subscription goes at once when nothing else of the
        run is awaited here. For a driver that leaves to wait for a signal: its watch would
        otherwise hold a subscription (and the driver's futures) per waiting run for as long
        as it waits. Returns how many were dropped."""
        rs = self._runs.get(run)
        keys = [k for k in self._pending if k[0] == run and which(k[1])]
        for key in keys:
            del self._pending[key]
            if rs is not None:
                rs.pending -= 1
        if rs is not None and rs.pending <= 0:
            del self._runs[run]
            self._idle.pop(run, None)
            if rs.sub is not None and not self._bus.nc.is_closed:
                with contextlib.suppress(Exception):
                    await rs.sub.unsubscribe()
        return len(keys)

    async def _on_msg(self, msg: Msg) -> None:
        _, run, future = msg.subject.rsplit(".", 2)
        self._deliver((run, future), msg.data, dict(msg.headers or {}))
        await self._release_idle(run)

    async def _release_idle(self, run: str) -> None:
        """Mark the run idle once nothing of it is awaited here; subscriptions idle for
        `IDLE_LINGER_S` (or past `MAX_IDLE_RUNS`) are dropped."""
        now = time.monotonic()
        rs = self._runs.get(run)
        if rs is not None and rs.pending == 0 and run not in self._idle:
            rs.idle_since = now
            self._idle[run] = rs
        if now - self._last_sweep < IDLE_LINGER_S / 2 and len(self._idle) <= MAX_IDLE_RUNS:
            return
        self._last_sweep = now
        expired = [r for r, s in self._idle.items()
                   if now - s.idle_since > IDLE_LINGER_S or len(self._idle) > MAX_IDLE_RUNS]
        for r in expired:
            idle = self._idle.pop(r, None)
            if idle is None:  # dropped meanwhile (`forget`)
                continue
            if self._runs.get(r) is idle:
                del self._runs[r]
            if idle.sub is not None and not self._bus.nc.is_closed:
                try:
                    await idle.sub.unsubscribe()
                except Exception:
                    pass

    def _deliver(self, key: tuple[str, str], data: bytes, headers: dict[str, str]) -> None:
        callbacks = self._pending.pop(key, None)
        if callbacks is None:
            return  # a sibling future nobody here awaits, or a duplicate
        rs = self._runs.get(key[0])
        if rs is not None:
            rs.pending -= 1
        result = FutureResult(key[0], key[1], data, headers)
        for cb in callbacks:
            try:
                cb(result)
            except Exception:
                log.exception("future.callback_failed", run_id=key[0], future_id=key[1])

    async def recheck(self) -> None:
        """Look every pending future up in one batch (after a reconnect)."""
        if not self._pending:
            return
        pending = list(self._pending)
        found = await self._lookup(pending)
        log.info("future.rechecked", pending=len(pending), found=found)


def _result(run: str, future: str, stored: StoredMsg) -> FutureResult:
    return FutureResult(run, future, stored.data, stored.headers)
