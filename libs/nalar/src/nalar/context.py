"""The call context: which run, session and future the running code belongs to.

Held in a ContextVar, so it is right under asyncio (each task copies it) and in the worker
threads the runtime starts (they run inside a copy of the caller's context). Code that starts
its own threads passes the context on with `contextvars.copy_context().run`.
"""

from __future__ import annotations

import itertools
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nalar_common.errors import NoRunContext as NoRunContext

if TYPE_CHECKING:
    from nalar.runtime import Runtime


class CancelFlag:
    """Set once when a call's run is cancelled or its time is up, read by its code in any
    thread (`nalar.cancelled()`): one attribute, so setting and reading it needs no lock."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass
class CallContext:
    runtime: Runtime
    run: str
    session: str
    future: str
    priority: int = 0
    attempt: int = 1
    deadline: float | None = None
    state: Any = None  # nalar.state.CallState of an agent call that uses managed state
    cancelled: CancelFlag | None = None  # set when the run is cancelled or time is up
    usage: dict[str, Any] = field(default_factory=dict)  # LLM usage of this call, summed
    on_token: Any = None  # where streamed LLM text goes (the host: the run's events)
    ledger: Any = None  # the idempotency ledger (`nalar.once`, tools with idempotent=False)
    operation: str | None = None  # the ledger operation a non-idempotent tool call runs as
    instance: str = ""  # the agent instance running the call (names the ledger claim)
    guard: Any = None  # nalar.guard.GuardClient when guardrails bind the run
    on_llm: Any = None  # where each LLM request's record goes (the host: `llm` events)
    replay: Any = None  # nalar.replay.RecordedLLM when a replay re-runs this call
    _llm_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def owner(self) -> str:
        """Who holds a ledger claim: this attempt of this call, on this instance."""
        return f"{self.instance}/{self.run}.{self.future}.a{self.attempt}"

    def next_llm(self) -> int:
        """The n-th LLM request of this call (1, 2, ...): how a replay finds its record."""
        with self._lock:
            return next(self._llm_seq)

    def next_future_id(self) -> str:
        """Deterministic: the n-th call of future `3` is `3_n`; the driver (`0`) makes `n`."""
        with self._lock:
            n = next(self._seq)
        return str(n) if self.future == "0" else f"{self.future}_{n}"


_current: ContextVar[CallContext | None] = ContextVar("nalar_call_context", default=None)


def current() -> CallContext:
    ctx = _current.get()
    if ctx is None:
        raise NoRunContext("no run context: call stubs inside a workflow or an agent method")
    return ctx


def current_or_none() -> CallContext | None:
    return _current.get()


def current_run_id() -> str | None:
    ctx = _current.get()
    return ctx.run if ctx else None


def cancelled() -> bool:
    """Whether the current run was cancelled: sync code that runs long checks this and stops
    (async code is cancelled outright)."""
    ctx = _current.get()
    return bool(ctx and ctx.cancelled is not None and ctx.cancelled.is_set())


def current_attempt() -> int:
    """Which attempt of the current call this is: 1, then 2, 3, ... when it runs again (its
    retry policy, a lost host, a re-run driver); 0 outside a call."""
    ctx = _current.get()
    return ctx.attempt if ctx else 0


def current_session_id() -> str | None:
    ctx = _current.get()
    return ctx.session if ctx else None


def enter(ctx: CallContext) -> object:
    return _current.set(ctx)


def leave(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
