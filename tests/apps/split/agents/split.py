"""Two agents meant to live on different nodes (`NALAR_AGENT_HOST_AGENTS=Alpha` on one node,
`Beta` on the other): every call from one to the other crosses nodes."""

from __future__ import annotations

from typing import Any

import nalar


def _sum(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_sum(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_sum(v) for v in value)
    return int(value)


# concurrency > 1: a nested call that comes back to the agent it started from (Alpha -> Beta
# -> Alpha) needs a second slot while the first one waits.
@nalar.agent(concurrency=16)
class Alpha:
    def step(self, x: int) -> int:
        return x + 1

    def total(self, parts: Any) -> int:
        return _sum(parts)

    def nest(self, x: int, depth: int) -> int:
        """Sync, blocks on the other node's agent: Alpha -> Beta -> Alpha -> ..."""
        if depth <= 0:
            return x
        return nalar.stub(Beta).nest(x + 1, depth - 1).value(timeout=20)  # type: ignore[no-any-return]

    async def anest(self, x: int, depth: int) -> int:
        if depth <= 0:
            return x
        return await nalar.stub(Beta).anest(x + 1, depth - 1)  # type: ignore[no-any-return]

    def relay(self, x: int) -> int:
        """Inside an agent method: a chain across both nodes without waiting in between."""
        a, b = nalar.stub(Alpha), nalar.stub(Beta)
        return b.step(a.step(b.step(x))).value(timeout=20)  # type: ignore[no-any-return]


@nalar.agent(concurrency=16)
class Beta:
    def step(self, x: int) -> int:
        return x * 2

    def total(self, parts: Any) -> int:
        return _sum(parts)

    def nest(self, x: int, depth: int) -> int:
        if depth <= 0:
            return x
        return nalar.stub(Alpha).nest(x * 2, depth - 1).value(timeout=20)  # type: ignore[no-any-return]

    async def anest(self, x: int, depth: int) -> int:
        if depth <= 0:
            return x
        return await nalar.stub(Alpha).anest(x * 2, depth - 1)  # type: ignore[no-any-return]
