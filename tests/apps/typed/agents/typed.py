"""Agents of the typed test app: the source `nalar stubs` turns into typed stubs."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence

import nalar


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@nalar.agent(concurrency=4, stateful=True)
class Typed:
    """Arithmetic and records, typed end to end."""

    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    async def aadd(self, a: int, b: int = 1) -> int:
        """Add on the event loop; `b` defaults to 1."""
        await asyncio.sleep(0)
        return a + b

    def describe(self, name: str, tags: Sequence[str] = (), *,
                 loud: bool = False) -> dict[str, object]:
        """A record for `name`.

        Multi-line docstrings survive, "quotes" and back\\slashes too.
        """
        return {"name": name.upper() if loud else name, "tags": list(tags)}

    def shift(self, value: int, mode: Mode = Mode.FAST, /, step: int = 1) -> int:
        return value + (step if mode is Mode.FAST else 0)

    def total(self, *values: int, **weights: float) -> float:
        return sum(values) + sum(weights.values())


@nalar.agent(name="typed-counter")
class Counter:
    def bump(self, by: int | None = None) -> int:
        return by or 1
