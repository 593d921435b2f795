"""The agent of the overhead benchmark: a method that does nothing, so a call costs only Nalar."""

from __future__ import annotations

import nalar


@nalar.agent(concurrency=256)
class Noop:
    async def noop(self) -> None:
        return None
