"""Human in the loop: `nalar.signal(name, timeout=...)` in a workflow returns a future that
`POST /v1/runs/{id}/signals/{name}` resolves.

A driver that needs a signal not yet given does not hold a worker while it waits: reading the
future raises `Suspend` (a BaseException, so `except Exception` does not swallow it), the host
records the run as `waiting` and frees the slot, and the driver is run again when the signal
arrives (or times out). The re-run replays: its earlier calls resolve from the stream, the
signal resolves from the stream, and it goes on, on any host, after any time.
"""

from __future__ import annotations

from typing import Any

from nalar_common.errors import InvalidInput
from nalar_common.subjects import ROOT_FUTURE

from nalar.context import current
from nalar.future import Future


class Suspend(BaseException):
    """Raised out of a driver that must wait for a signal."""

    def __init__(self, future: Future[Any]) -> None:
        super().__init__(f"waiting for signal {future.method!r}")
        self.future = future


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
