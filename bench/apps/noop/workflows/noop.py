"""The benchmark app's one workflow (the gateway serves only apps with at least one)."""

from __future__ import annotations

import nalar
from agents.noop import Noop


@nalar.workflow
async def noop() -> None:
    """One no-op call."""
    await nalar.stub(Noop).noop()
