"""Agents of the test app: echo, failures, dependency chains and context checks."""

from __future__ import annotations

import asyncio
import time

import nalar


@nalar.agent(concurrency=16)
class Echo:
    def echo(self, value: object) -> object:
        return value

    async def aecho(self, value: object) -> object:
        await asyncio.sleep(0)
        return value

    def add(self, a: int, b: int) -> int:
        return a + b

    def total(self, values: list[int], extra: dict[str, int]) -> int:
        return sum(values) + sum(extra.values())

    def whoami(self) -> dict[str, object]:
        return {"run": nalar.current_run_id(), "session": nalar.current_session_id()}

    def make(self, n: int) -> str:
        return "x" * n

    def size(self, a: str, b: str) -> int:
        return len(a) + len(b)

    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def spin(self, seconds: float) -> str:
        """Sync work that stops early when its run is cancelled."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if nalar.cancelled():
                return "stopped"
            time.sleep(0.01)
        return "finished"

    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


@nalar.agent(concurrency=4, timeout=30)
class Limited:
    @nalar.method(timeout=0.3)
    async def hang(self) -> None:
        await asyncio.sleep(60)

    @nalar.method(timeout=0.3)
    def hang_sync(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not nalar.cancelled():
            time.sleep(0.01)
        return "stopped"

    def quick(self) -> str:
        return "ok"


@nalar.agent
class Failing:
    def boom(self, message: str) -> None:
        raise ValueError(message)

    def unserialisable(self) -> object:
        return object()


@nalar.agent(concurrency=64)
class Noop:
    async def noop(self) -> None:
        return None


@nalar.agent(concurrency=4)
class Writer:
    def write(self, topic: str) -> dict[str, object]:
        """Streams its answer (each piece becomes a `token` event of the run)."""
        text = "".join(nalar.llm.stream_chat([{"role": "user", "content": topic}],
                                             max_tokens=12))
        again = nalar.llm.chat([{"role": "user", "content": topic}], max_tokens=12)
        return {"text": text, "same": text == again.text}
