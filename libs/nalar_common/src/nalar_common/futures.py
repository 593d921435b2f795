"""Waiting for futures: a core subscription per awaited future plus a direct-get backstop.

Never a JetStream consumer or KV watch per future (tech.md A.2). After a reconnect, every
pending future is re-checked with one batch direct get, since core subscriptions miss what was
published while disconnected.
"""

from __future__ import annotations

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


class _Pending:
    __slots__ = ("callbacks", "sub")

    def __init__(self) -> None:
        self.callbacks: list[Callback] = []
        self.sub: Subscription | None = None


class FutureWaiter:
    """Calls back once per future when its result appears; shares one subscription per future."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._pending: dict[tuple[str, str], _Pending] = {}
        bus.on_reconnect(self.recheck)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def watch(self, run: str, future: str, callback: Callback, *,
                    check_stored: bool = True) -> None:
        """Subscribe (if needed) then, with `check_stored`, look the result up in the stream.

        A caller that subscribes *before* publishing the call that produces the future can skip
        the backstop: the server handles the SUB before the PUB on one connection.
        """
        key = (run, future)
        entry = self._pending.get(key)
        if entry is not None:
            entry.callbacks.append(callback)
            return
        entry = self._pending[key] = _Pending()
        entry.callbacks.append(callback)
        subject = self._bus.names.future(run, future)

        async def on_msg(msg: Msg) -> None:
            self._deliver(key, msg.data, dict(msg.headers or {}))

        entry.sub = await self._bus.nc.subscribe(subject, cb=on_msg)
        await entry.sub.unsubscribe(limit=1)  # the server drops the interest after one message
        if check_stored:
            stored = await self._bus.direct_get_last(self._bus.names.futures_stream, subject)
            if stored is not None:
                await self._unsubscribe(self._deliver(key, stored.data, stored.headers))

    async def get(self, run: str, future: str) -> FutureResult | None:
        """The stored result, if the future has resolved."""
        stored = await self._bus.direct_get_last(self._bus.names.futures_stream,
                                                 self._bus.names.future(run, future))
        return None if stored is None else _result(run, future, stored)

    async def _unsubscribe(self, sub: Subscription | None) -> None:
        """Drop a subscription whose future the backstop resolved (no message will come)."""
        if sub is None or self._bus.nc.is_closed:
            return
        try:
            await sub.unsubscribe()
        except Exception:  # already closed by its one message
            pass

    def _deliver(self, key: tuple[str, str], data: bytes,
                 headers: dict[str, str]) -> Subscription | None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return None
        result = FutureResult(key[0], key[1], data, headers)
        for cb in entry.callbacks:
            try:
                cb(result)
            except Exception:
                log.exception("future.callback_failed", run_id=key[0], future_id=key[1])
        return entry.sub

    async def recheck(self) -> None:
        """Look every pending future up in one batch (after a reconnect)."""
        if not self._pending:
            return
        names = self._bus.names
        subjects = {names.future(r, f): (r, f) for r, f in self._pending}
        found = await self._bus.multi_last(names.futures_stream, subjects)
        for subject, stored in found.items():
            await self._unsubscribe(self._deliver(subjects[subject], stored.data, stored.headers))
        log.info("future.rechecked", pending=len(subjects), found=len(found))


def _result(run: str, future: str, stored: StoredMsg) -> FutureResult:
    return FutureResult(run, future, stored.data, stored.headers)
