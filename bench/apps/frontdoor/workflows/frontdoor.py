"""The front-door benchmark's workflows (bench/http.py): a run of one no-op call, and a run that
waits for a signal."""

from __future__ import annotations

import nalar
from agents.noop import Noop


@nalar.workflow
async def noop() -> None:
    """The driver and one no-op call."""
    await nalar.stub(Noop).noop()


@nalar.workflow
async def wait_go() -> object:
    """Waits (without a worker) for the signal `go`, and returns its value."""
    return await nalar.signal("go")
