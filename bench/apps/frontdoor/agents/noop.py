"""The agent of the front-door benchmark: a method that does nothing, so a run costs only
Nalar."""

from __future__ import annotations

import nalar


@nalar.agent(concurrency=256)
class Noop:
    async def noop(self) -> None:
        return None
