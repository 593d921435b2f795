"""`Future[T]`: what a stub call returns at once; `value(timeout)`, `available()`, `await`.

Resolved by the runtime when the result lands on `nalar.fut.<run>.<future>`. Safe to wait on
from worker threads (blocking) and from coroutines (`await`); blocking on the event loop's own
thread raises instead of deadlocking. A value kept by reference (`nalar_common.values`) is
fetched when it is first read, so a future only passed on to another call never is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import Any, Generic, TypeVar

from nalar_common.envelope import ValueRef
from nalar_common.errors import BlockingInEventLoop as BlockingInEventLoop
from nalar_common.errors import NalarError, Timeout
from nalar_common.futures import FutureResult
from nalar_common.values import ValueStore, carried

T = TypeVar("T")

_UNSET: Any = object()


class Future(Generic[T]):
    __slots__ = ("_event", "_loop", "_result", "_store", "_value", "_waiters", "agent",
                 "future", "method", "run")

    def __init__(self, run: str, future: str, agent: str, method: str,
                 loop: asyncio.AbstractEventLoop, store: ValueStore | None = None) -> None:
        self.run, self.future, self.agent, self.method = run, future, agent, method
        self._loop = loop
        self._store = store
        self._event = threading.Event()
        self._result: FutureResult | None = None
        self._value: Any = _UNSET
        self._waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        state = "resolved" if self._event.is_set() else "pending"
        return f"<Future {self.run}.{self.future} {self.agent}.{self.method} {state}>"

    # -- resolution (event loop thread) ----------------------------------------
    def _resolve(self, result: FutureResult) -> None:
        if self._event.is_set():
            return
        self._result = result
        self._event.set()
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()

    # -- user API ----------------------------------------------------------------
    def available(self) -> bool:
        """True once the future has resolved (to a value or an error); never blocks."""
        return self._event.is_set()

    def value(self, timeout: float | None = None) -> T:
        """Block until resolved (up to `timeout` s) and return the value or raise its error."""
        if not self._event.is_set():
            if _on_loop_thread(self._loop):
                raise BlockingInEventLoop(
                    f"value() would block the event loop; use `await` on {self!r}")
            if not self._event.wait(timeout):
                raise Timeout(f"future {self.future} of run {self.run} not resolved after "
                              f"{timeout}s", details={"future": self.future, "run": self.run})
        if self._by_reference():
            if _on_loop_thread(self._loop):
                raise BlockingInEventLoop(
                    f"value() would fetch a large value on the event loop; use `await` on "
                    f"{self!r}")
            asyncio.run_coroutine_threadsafe(self._fetch(), self._loop).result()
        return self._decoded()

    @property
    def reference(self) -> ValueRef | None:
        """Where the value is kept when it is kept whole by reference (too large for a
        message), else None; known once resolved, without fetching anything."""
        if self._result is None or not carried(self._result.headers):
            return None
        value = self._result.body().get("value")
        return value if isinstance(value, ValueRef) else None

    def _by_reference(self) -> bool:
        """Resolved to a value kept by reference that has not been fetched yet."""
        return self._value is _UNSET and self._store is not None and \
            self._result is not None and carried(self._result.headers)

    async def _fetch(self) -> None:
        """Read the value and fetch what it holds by reference (on the loop)."""
        if not self._by_reference():
            return
        assert self._result is not None and self._store is not None
        try:
            value = self._result.value()
        except NalarError as exc:
            self._value = exc
            return
        fetched = await self._store.resolve(value)
        if self._value is _UNSET:
            self._value = fetched

    def _decoded(self) -> T:
        if self._value is _UNSET:
            assert self._result is not None
            try:
                self._value = self._result.value()
            except NalarError as exc:
                self._value = exc
        if isinstance(self._value, NalarError):
            raise self._value
        return self._value  # type: ignore[no-any-return]

    async def wait(self, timeout: float | None = None) -> T:
        if not self._event.is_set():
            loop = asyncio.get_running_loop()
            if loop is not self._loop:
                await asyncio.wait_for(asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(self._wait_here(), self._loop)), timeout)
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await self._wait_here()
                except TimeoutError:
                    raise Timeout(f"future {self.future} of run {self.run} not resolved after "
                                  f"{timeout}s") from None
        if self._by_reference():
            if asyncio.get_running_loop() is self._loop:
                await self._fetch()
            else:
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(self._fetch(), self._loop))
        return self._decoded()

    async def _wait_here(self) -> None:
        if self._event.is_set():
            return
        w: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(w)
        await w

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait().__await__()


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
