"""Workflows whose futures hop between the two nodes of the split deployment."""

from __future__ import annotations

import nalar
from agents.split import Alpha, Beta


def _chain(x: int, links: int) -> nalar.Future:
    """Futures 1..links alternate Alpha, Beta, Alpha, ... each taking the previous one; then
    one Beta call takes a dict of lists of futures from both nodes, and a last Alpha call takes
    that. Nothing is awaited in between."""
    a, b = nalar.stub(Alpha), nalar.stub(Beta)
    futs = [a.step(x)]
    for i in range(1, links):
        futs.append((b if i % 2 else a).step(futs[-1]))
    mixed = b.total({"alpha": futs[0::2], "beta": futs[1::2], "last": [futs[-1], 0]})
    return a.step(mixed)


@nalar.workflow
def chain(x: int, links: int = 6) -> int:
    return _chain(x, links).value(timeout=30)  # type: ignore[no-any-return]


@nalar.workflow
async def achain(x: int, links: int = 6) -> int:
    return await _chain(x, links)  # type: ignore[no-any-return]


@nalar.workflow
def nested(x: int, depth: int = 4, use_async: bool = False) -> int:
    """Agent methods that call the other node's agent and wait for it."""
    a = nalar.stub(Alpha)
    fut = a.anest(x, depth) if use_async else a.nest(x, depth)
    return fut.value(timeout=30)  # type: ignore[no-any-return]


@nalar.workflow
def relay(x: int) -> int:
    """Beta's result goes into Alpha.relay, which chains across both nodes itself."""
    return nalar.stub(Alpha).relay(nalar.stub(Beta).step(x)).value(timeout=30)  # type: ignore[no-any-return]
