"""Running one call of user code, the same way on an agent host and in local mode: resolve
arguments, enter the call context, run it (sync code in worker threads, never on the loop), and
turn the outcome into a value or a typed error.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nalar_common.calls import CallSpec
from nalar_common.envelope import FutureRef, substitute_refs
from nalar_common.errors import AgentError, InvalidInput, NalarError, NotFound, Timeout
from nalar_common.futures import FutureResult
from nalar_common.wire import DepResult

from nalar.context import CallContext, enter, leave


def resolve_args(call: CallSpec, deps: Mapping[str, DepResult]) -> tuple[list[Any],
                                                                         dict[str, Any]]:
    """Substitute dependency values (already resolved by the local controller) for their refs."""
    values: dict[FutureRef, Any] = {}
    for fid, res in deps.items():
        values[FutureRef(call.run, fid)] = FutureResult(call.run, fid, res.data,
                                                        res.headers).value()
    if not values:
        return call.args, call.kwargs
    return substitute_refs(call.args, values), substitute_refs(call.kwargs, values)


async def invoke(fn: Any, args: list[Any], kwargs: dict[str, Any], ctx: CallContext,
                 pool: ThreadPoolExecutor, timeout: float | None = None) -> Any:
    """Call `fn` inside `ctx`: coroutines on the loop, plain functions in the thread pool;
    past `timeout` the call ends with `Timeout` (sync code is told via `nalar.cancelled()`)."""
    if timeout is None:
        return await _invoke(fn, args, kwargs, ctx, pool)
    try:
        async with asyncio.timeout(timeout):
            return await _invoke(fn, args, kwargs, ctx, pool)
    except TimeoutError:
        if ctx.cancelled is not None:
            ctx.cancelled.set()
        raise Timeout(f"{getattr(fn, '__qualname__', fn)} ran longer than its timeout of "
                      f"{timeout:g}s", details={"timeout": timeout}) from None


async def _invoke(fn: Any, args: list[Any], kwargs: dict[str, Any], ctx: CallContext,
                  pool: ThreadPoolExecutor) -> Any:
    try:
        _signature(getattr(fn, "__func__", fn)).bind(None, *args, **kwargs) \
            if inspect.ismethod(fn) else _signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidInput(f"bad arguments for {getattr(fn, '__qualname__', fn)}: {exc}") from exc
    token = enter(ctx)
    try:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(
            pool, contextvars.copy_context().run, call)
    finally:
        leave(token)


@functools.lru_cache(maxsize=4096)
def _signature(fn: Any) -> inspect.Signature:
    return inspect.signature(fn)


def as_error(exc: BaseException, call: CallSpec) -> NalarError:
    """A typed error for the future: Nalar errors pass through, user exceptions are wrapped."""
    if isinstance(exc, NalarError):
        exc.details.setdefault("future", call.future)
        exc.details.setdefault("agent", call.agent)
        exc.details.setdefault("method", call.method)
        return exc
    return AgentError(f"{type(exc).__name__}: {exc}", details={
        "type": type(exc).__name__, "traceback": "".join(traceback.format_exception(exc)),
        "future": call.future, "agent": call.agent, "method": call.method})


def lookup(target: Any, method: str, agent: str) -> Any:
    fn = getattr(target, method, None) if not method.startswith("_") else None
    if fn is None or not callable(fn):
        raise NotFound(f"agent {agent!r} has no method {method!r}",
                       details={"agent": agent, "method": method})
    return fn


def context_for(runtime: Any, call: CallSpec, attempt: int) -> CallContext:
    """`attempt` > 1 marks a re-execution: its calls look for earlier results first, so
    finished work resolves from the stream instead of running again."""
    return CallContext(runtime=runtime, run=call.run, session=call.session, future=call.future,
                       priority=call.priority, attempt=attempt, deadline=call.deadline)
