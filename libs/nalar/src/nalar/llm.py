"""`nalar.llm`: the LLM interface agents call, on the engine of the host they run on.

`chat(messages)` / `generate(prompt)` (blocking, for sync methods), `achat` / `agenerate`
(async), and `stream_chat` / `astream_chat` (text pieces as they come). `chat` and `achat`
take `tools` in the OpenAI tool-calling form (`nalar.toolspec.tool_spec(fn).schema()` builds
one from a function) and `tool_choice`; the calls the model proposes come back as
`Completion.tool_calls` (nothing runs them here: `nalar.AgentLoop` does, as futures).
The session id goes along on its own (KV-cache affinity); every call's usage and timings are
added to the future that made it, and streamed pieces become `token` events of the run.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from nalar_common.errors import InvalidInput

from nalar.context import CallContext, current_or_none
from nalar.engines import SimulatedEngine
from nalar.engines.base import Completion, Engine, LLMRequest, OnToken, ToolCall
from nalar.future import BlockingInEventLoop
from nalar.replay import request_digest

__all__ = ["Completion", "SimulatedEngine", "ToolCall", "achat", "agenerate", "astream_chat",
           "chat", "engine", "generate", "stream_chat"]

Messages = list[dict[str, Any]]
Tools = list[dict[str, Any]] | None

_fallback: Engine | None = None


def engine() -> Engine:
    """The engine of the current run's host (a simulated one outside any run)."""
    global _fallback
    ctx = current_or_none()
    eng: Any = getattr(ctx.runtime, "engine", None) if ctx else None
    if eng is not None:
        return eng  # type: ignore[no-any-return]
    if _fallback is None:
        _fallback = SimulatedEngine()
    return _fallback


def _request(messages: Messages | None, prompt: str | None, max_tokens: int,
             temperature: float, tools: Tools = None, tool_choice: Any = None) -> LLMRequest:
    ctx = current_or_none()
    if tools is not None and (not isinstance(tools, list) or
                              not all(isinstance(t, dict) for t in tools)):
        raise InvalidInput("tools must be a list of tool schemas (dicts in the OpenAI form)")
    return LLMRequest(messages=messages, prompt=prompt, max_tokens=max_tokens,
                      temperature=temperature, session=ctx.session if ctx else None,
                      tools=tools or None, tool_choice=tool_choice if tools else None)


def _record(ctx: CallContext | None, completion: Completion) -> None:
    """Add the call's usage and timings to the future being computed."""
    if ctx is None:
        return
    with ctx._lock:
        u = ctx.usage
        u["llm_calls"] = u.get("llm_calls", 0) + 1
        for k, v in completion.usage().items():
            u[k] = u.get(k, 0) + v
        u.setdefault("llm", []).append({**completion.usage(), **completion.timings,
                                        "engine": completion.engine})


async def _complete(request: LLMRequest, on_token: OnToken | None = None) -> Completion:
    ctx = current_or_none()
    sink = ctx.on_token if ctx is not None else None

    def tee(piece: str) -> None:
        if on_token is not None:
            on_token(piece)
        if sink is not None:
            sink(piece)

    if ctx is None:
        completion: Completion = await engine().complete(request, on_token)
        return completion
    n, asked = ctx.next_llm(), request_digest(request)
    if ctx.replay is not None:  # a replay: the same request in the same place is answered
        recorded: Completion | None = await ctx.replay.find(n, asked)
        if recorded is not None:
            if on_token is not None or sink is not None:
                tee(recorded.text)
            _journal(ctx, n, asked, recorded)
            return recorded
    completion = await _ask_engine(ctx, request, tee if (on_token or sink) else None)
    _record(ctx, completion)
    _journal(ctx, n, asked, completion)
    return completion


async def _ask_engine(ctx: CallContext, request: LLMRequest,
                      on_token: OnToken | None) -> Completion:
    """The engine call, inside the run's guardrails when they bind it (before the spend)."""
    eng, guard = engine(), ctx.guard
    if guard is None:
        return await eng.complete(request, on_token)
    reservation = await guard.before(eng, request)
    try:
        completion = await eng.complete(request, on_token)
    except BaseException:
        await guard.after(reservation, None)
        raise
    await guard.after(reservation, completion)
    return completion


def _journal(ctx: CallContext, n: int, asked: str, completion: Completion) -> None:
    if ctx.on_llm is not None:
        ctx.on_llm(n, asked, completion)


def _blocking(coro: Any) -> Any:
    """Run an engine call from sync code: on the runtime's loop from a worker thread."""
    ctx = current_or_none()
    loop = getattr(ctx.runtime, "_loop", None) if ctx else None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        coro.close()
        raise BlockingInEventLoop("blocking LLM call on the event loop; use achat/agenerate")
    if loop is None:
        return asyncio.run(coro)
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


async def achat(messages: Messages, *, max_tokens: int = 64, temperature: float = 0.0,
                tools: Tools = None, tool_choice: Any = None) -> Completion:
    return await _complete(_request(messages, None, max_tokens, temperature, tools,
                                    tool_choice))


async def agenerate(prompt: str, *, max_tokens: int = 64, temperature: float = 0.0) -> Completion:
    return await _complete(_request(None, prompt, max_tokens, temperature))


def chat(messages: Messages, *, max_tokens: int = 64, temperature: float = 0.0,
         tools: Tools = None, tool_choice: Any = None) -> Completion:
    """Blocking chat completion (sync agent methods run in worker threads)."""
    return _blocking(achat(messages, max_tokens=max_tokens,  # type: ignore[no-any-return]
                           temperature=temperature, tools=tools, tool_choice=tool_choice))


def generate(prompt: str, *, max_tokens: int = 64, temperature: float = 0.0) -> Completion:
    """Blocking completion of a raw prompt."""
    return _blocking(agenerate(prompt, max_tokens=max_tokens,  # type: ignore[no-any-return]
                               temperature=temperature))


async def astream_chat(messages: Messages, *, max_tokens: int = 64,
                       temperature: float = 0.0) -> AsyncIterator[str]:
    """Text pieces as the engine produces them; the usage is recorded when it ends."""
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    request = _request(messages, None, max_tokens, temperature)

    async def run() -> Completion:
        try:
            return await _complete(request, pieces.put_nowait)
        finally:
            pieces.put_nowait(None)

    task = asyncio.ensure_future(run())  # awaited below
    try:
        while (piece := await pieces.get()) is not None:
            yield piece
        await task
    finally:
        if not task.done():
            task.cancel()


def stream_chat(messages: Messages, *, max_tokens: int = 64,
                temperature: float = 0.0) -> Iterator[str]:
    """Blocking version of `astream_chat`, for sync methods."""
    pieces: queue.Queue[str | None] = queue.Queue()
    done: list[BaseException] = []
    request = _request(messages, None, max_tokens, temperature)
    ctx = current_or_none()

    async def run() -> None:
        try:
            await _complete(request, pieces.put)
        except BaseException as exc:
            done.append(exc)
        finally:
            pieces.put(None)

    loop = getattr(ctx.runtime, "_loop", None) if ctx is not None else None
    if loop is not None:
        asyncio.run_coroutine_threadsafe(run(), loop)
    else:
        threading.Thread(target=lambda: asyncio.run(run()), daemon=True).start()
    while (piece := pieces.get()) is not None:
        yield piece
    if done:
        raise done[0]
