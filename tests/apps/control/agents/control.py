"""Agents for the control-plane tests: calls that hold an instance until the test lets them
go (so a test decides which instance is busy), managed state, a stateful agent, and two agent
types whose load a test shifts between them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import nalar


def _hold(name: str) -> int:
    """Block until the test creates `<flags>/<name>.go`; say where this runs meanwhile."""
    flags = Path(os.environ["NALAR_TEST_FLAGS"])
    (flags / f"{name}.started").write_text(str(os.getpid()))
    deadline = time.monotonic() + 90
    while not (flags / f"{name}.go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was never let go")
        time.sleep(0.02)
    return os.getpid()


@nalar.agent(concurrency=1)
class Worker:
    def hold(self, name: str) -> int:
        return _hold(name)

    def bump(self) -> dict[str, int]:
        state = nalar.managed_dict("counter")
        state["n"] = state.get("n", 0) + 1
        return {"n": int(state["n"]), "pid": os.getpid()}


@nalar.agent(concurrency=1, stateful=True)
class Sticky:
    def hold(self, name: str) -> int:
        return _hold(name)

    def touch(self) -> int:
        return os.getpid()


@nalar.agent(concurrency=1, max_instances=3)
class Chat:
    async def work(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"chat@{os.getpid()}"


@nalar.agent(concurrency=1, max_instances=3)
class Code:
    async def work(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"code@{os.getpid()}"
