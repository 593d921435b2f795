"""The fault suite's workflow: `n` tool calls, the first half in parallel, then (once those
have finished, as an agent loop would) the rest chained through futures; the result, the sum
of squares, is known in advance."""

from __future__ import annotations

import nalar
from agents.counter import Counter


def expected(n: int) -> int:
    return sum(i * i for i in range(n))


@nalar.workflow
def pipeline(n: int = 4) -> int:
    c = nalar.stub(Counter)
    parallel = [c.square(i) for i in range(n // 2)]
    total = sum(f.value(timeout=600) for f in parallel)
    prev = None
    chained = []
    for i in range(n // 2, n):
        prev = c.square(i, after=prev)
        chained.append(prev)
    return total + sum(f.value(timeout=600) for f in chained)
