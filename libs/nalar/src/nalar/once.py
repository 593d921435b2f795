"""Side effects that happen once: `nalar.once(name)` blocks and `@nalar.tool(idempotent=False)`.

    with nalar.once("charge") as op:
        if not op.done:
            op.result = payments.charge(card, amount, idempotency_key=op.key)
    return op.result

The first attempt of a call runs the block and its result is recorded in the idempotency
ledger under (run, future, name); a retried or re-run call (another attempt of the same
future) finds the record, `op.done` is true and `op.result` is what the first one got. An
attempt that died half-way left no record: the next runs the block again with `op.tries > 1`,
and `op.key` (the same on every attempt) lets the external API drop the repeat. A block that
raises records nothing. Names must be unique within one call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from nalar_common.errors import NalarError
from nalar_common.futurekey import FutureKey
from nalar_common.ledger import Begun
from nalar_common.state import redis_unavailable
from nalar_common.values import inline_limit, maybe_large, store_for

from nalar.context import CallContext, current


class MemoryLedger:
    """The ledger of local mode (`nalar run --local`): one process, kept in memory."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, str], Any] = {}
        self._tries: dict[tuple[str, str], int] = {}
        self.stats = {"recorded": 0, "replayed": 0, "waited": 0}

    async def begin(self, run: str, key: str, owner: str) -> Begun:
        if (run, key) in self._done:
            self.stats["replayed"] += 1
            return Begun(True, self._done[run, key])
        self._tries[run, key] = self._tries.get((run, key), 0) + 1
        return Begun(False, tries=self._tries[run, key])

    async def renew(self, run: str, key: str, owner: str) -> bool:
        return True

    async def finish(self, run: str, key: str, owner: str, value: Any) -> Any:
        self.stats["recorded"] += 1
        return self._done.setdefault((run, key), value)

    async def abandon(self, run: str, key: str, owner: str) -> None:
        return None


class Operation:
    """One `once` block: `done` and `result` (what an earlier attempt recorded, or what this
    one sets), `key` (pass it to APIs that accept an idempotency key) and `tries`."""

    __slots__ = ("done", "key", "name", "result", "tries")

    def __init__(self, name: str, key: str) -> None:
        self.name, self.key = name, key
        self.done = False
        self.result: Any = None
        self.tries = 0


class once:  # used like a function: `with nalar.once("x") as op`
    """A block whose effect happens once per call, across retries and re-runs."""

    def __init__(self, name: str, *, _ctx: CallContext | None = None) -> None:
        if not name or not isinstance(name, str):
            raise ValueError("once() needs a non-empty name")
        self.name = name
        self._given = _ctx  # the host runs a whole tool call as one block, outside its context
        self._ctx: CallContext | None = None
        self._op: Operation | None = None
        self._renewer: asyncio.Future[None] | None = None
        self._stop = threading.Event()

    # -- sync ------------------------------------------------------------------
    def __enter__(self) -> Operation:
        ctx = self._bind()
        op: Operation = self._on_loop(ctx, self._begin(ctx))
        return op

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._ctx is not None
        self._on_loop(self._ctx, self._end(self._ctx, exc))

    # -- async -----------------------------------------------------------------
    async def __aenter__(self) -> Operation:
        return await self._begin(self._bind())

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._ctx is not None
        await self._end(self._ctx, exc)

    # -- shared ----------------------------------------------------------------
    def _bind(self) -> CallContext:
        ctx = self._ctx = self._given or current()
        if ctx.ledger is None:
            raise NalarError("no idempotency ledger in this process", code="no_ledger")
        return ctx

    @staticmethod
    def _on_loop(ctx: CallContext, coro: Awaitable[Any]) -> Any:
        """Run a ledger step on the runtime's loop from a worker thread."""
        return asyncio.run_coroutine_threadsafe(coro, ctx.runtime.loop).result()  # type: ignore[arg-type]

    async def _begin(self, ctx: CallContext) -> Operation:
        op = self._op = Operation(self.name, operation_key(ctx, self.name))
        with redis_unavailable("idempotency ledger"):
            begun = await ctx.ledger.begin(ctx.run, self._ledger_key(ctx), ctx.owner)
        op.done, op.tries = begun.done, begun.tries
        if begun.done:
            op.result = begun.value
        else:
            self._renewer = asyncio.ensure_future(self._renew(ctx))
        return op

    async def _renew(self, ctx: CallContext) -> None:
        period = getattr(ctx.ledger, "claim_ttl_ms", 10_000) / 3000
        while True:
            await asyncio.sleep(period)
            try:
                await ctx.ledger.renew(ctx.run, self._ledger_key(ctx), ctx.owner)
            except Exception:
                pass

    async def _end(self, ctx: CallContext, exc: BaseException | None) -> None:
        op = self._op
        assert op is not None
        if self._renewer is not None:
            self._renewer.cancel()
        if op.done:
            return
        key = self._ledger_key(ctx)
        if exc is not None:
            await _abandon(ctx, key)  # so the retry runs at once, not after the claim expires
            return
        op.result = await _finish(ctx, key, op.result)
        op.done = True

    def _ledger_key(self, ctx: CallContext) -> str:
        return f"{ctx.future}:{self.name}"


FINISH_RETRY_S = 30.0


async def _abandon(ctx: CallContext, key: str) -> None:
    """Free the claim of a failed attempt; while Redis is away try a few times (about 3 s),
    then leave it to expire."""
    delay = 0.1
    for _ in range(5):
        try:
            await ctx.ledger.abandon(ctx.run, key, ctx.owner)
            return
        except Exception:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _finish(ctx: CallContext, key: str, value: Any) -> Any:
    """Record the effect's result. The effect has happened: while Redis restarts keep
    trying, so a retry finds the record; past `FINISH_RETRY_S` the call fails retryably
    and its next attempt runs the block again (with the same `op.key`)."""
    give_up = time.monotonic() + FINISH_RETRY_S
    delay = 0.1
    while True:
        try:
            with redis_unavailable("idempotency ledger"):
                return await ctx.ledger.finish(ctx.run, key, ctx.owner, value)
        except NalarError:
            if time.monotonic() + delay > give_up:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def operation_key(ctx: CallContext, name: str) -> str:
    """The idempotency key of operation `name` of the current call: the same on every attempt
    of the call, different for every call and run."""
    return FutureKey(ctx.run, ctx.future).op_id(name)


def idempotency_key(name: str | None = None) -> str:
    """Inside a `@nalar.tool(idempotent=False)` method: the key of this call's effect, to pass
    to an external API that accepts one; with `name`, the key of `nalar.once(name)`."""
    ctx = current()
    return operation_key(ctx, name or ctx.operation or "call")


async def run_once(ctx: CallContext, name: str, run: Callable[[], Awaitable[Any]]) -> Any:
    """Run a whole call as one `once` block (a tool with `idempotent=False`)."""
    ctx.operation = name
    async with once(name, _ctx=ctx) as op:
        if not op.done:
            op.result = await _kept(ctx, await run())
    return op.result


async def _kept(ctx: CallContext, value: Any) -> Any:
    """A large result is kept in the values bucket first, so the ledger records (and gives a
    retry) only its reference (nalar_common.values); in local mode it stays as it is."""
    bus = getattr(ctx.runtime, "bus", None)
    if bus is None or not maybe_large(value):
        return value
    try:
        return await store_for(bus).keep_if_large(ctx.run, ctx.future, "result", value,
                                                  inline_limit(bus))
    except (TypeError, ValueError, OverflowError):
        return value  # cannot be packed: its result says so


__all__ = ["MemoryLedger", "Operation", "idempotency_key", "once", "run_once"]
