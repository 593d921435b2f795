"""Human in the loop: `nalar.signal(name, timeout=...)` in a workflow returns a future that
`POST /v1/runs/{id}/signals/{name}` resolves.

A driver that needs a signal not yet given does not hold a worker while it waits: reading the
future raises `Suspend` (a BaseException, so `except Exception` does not swallow it), the host
records the run as `waiting` and frees the slot, and the driver is run again when the signal
arrives (or times out). The re-run replays: its earlier calls resolve from the stream, the
signal resolves from the stream, and it goes on, on any host, after any time.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, TypeVar

from nalar_common.errors import InvalidInput
from nalar_common.subjects import ROOT_FUTURE
from nalar_common.values import ValueStore

from nalar.context import current
from nalar.future import Future

T = TypeVar("T")
LOOKUP_WAIT_S = 10.0  # how long a read waits for the signal's first lookup in the stream


class Suspend(BaseException):
    """Raised out of a driver that must wait for a signal."""

    def __init__(self, future: Future[Any]) -> None:
        super().__init__(f"waiting for signal {future.method!r}")
        self.future = future


class SignalFuture(Future[T]):
    """The future of a signal: reading it before the signal is given raises `Suspend` (once
    the stream has been looked up: `looked_up`) instead of blocking a worker."""

    __slots__ = ("looked_up",)

    def __init__(self, run: str, future: str, name: str, loop: asyncio.AbstractEventLoop,
                 store: ValueStore | None = None) -> None:
        super().__init__(run, future, "_signal", name, loop, store)
        self.looked_up = threading.Event()  # set by the runtime once the stream was read

    def _suspend_unless_resolved(self) -> None:
        self.looked_up.wait(LOOKUP_WAIT_S)
        if not self.available():
            raise Suspend(self)

    def value(self, timeout: float | None = None) -> T:
        self._suspend_unless_resolved()
        return super().value(timeout)

    async def wait(self, timeout: float | None = None) -> T:
        if not self.looked_up.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.looked_up.wait,
                                                             LOOKUP_WAIT_S)
        self._suspend_unless_resolved()
        return await super().wait(timeout)


def signal(name: str, *, timeout: float | None = None) -> Future[Any]:
    """The value of the signal `name` of this run, as a future (`timeout` seconds after the
    run first asks for it, the future resolves to a `Timeout` error instead)."""
    ctx = current()
    if ctx.future != ROOT_FUTURE:
        raise InvalidInput("signals are awaited by workflows, not by agent methods")
    if timeout is not None and timeout <= 0:
        raise InvalidInput("signal timeout must be positive")
    signal_ = getattr(ctx.runtime, "signal", None)
    if signal_ is None:
        raise InvalidInput("this runtime does not support signals")
    return signal_(ctx, name, timeout)  # type: ignore[no-any-return]
