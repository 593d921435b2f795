"""`@nalar.agent` and `@nalar.workflow`: they annotate plain classes and functions, nothing more.

No global registry: `nalar.app.load_app` finds the annotated objects in an app's modules.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from nalar.retry import DEFAULT_RETRY, Retry

AGENT_ATTR = "__nalar_agent__"
WORKFLOW_ATTR = "__nalar_workflow__"

C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MethodSpec:
    name: str
    is_async: bool
    signature: inspect.Signature
    doc: str | None = None
    timeout: float | None = None  # seconds a call may run; then it fails with `Timeout`
    retry: Retry = DEFAULT_RETRY
    idempotent: bool = True  # False: a tool with side effects, its result kept in the ledger
    tool: bool = False  # `@nalar.tool`: it reaches outside (a replay never runs it)


@dataclass(frozen=True)
class AgentSpec:
    name: str
    cls: type
    concurrency: int = 1
    stateful: bool = False
    min_instances: int = 1
    max_instances: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    uses_state: bool = False  # some method reads managed state: the host loads it per call


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    signature: inspect.Signature
    doc: str | None = None


_STATE_NAMES = frozenset({"managed_dict", "managed_list"})


def _uses_state(cls: type) -> bool:
    """Whether any method's code (nested functions included) names managed state."""
    stack = [fn.__code__ for _, fn in inspect.getmembers(cls, inspect.isfunction)]
    while stack:
        code = stack.pop()
        if _STATE_NAMES & set(code.co_names):
            return True
        stack.extend(c for c in code.co_consts if inspect.iscode(c))
    return False


METHOD_ATTR = "__nalar_method__"
_UNSET: Any = object()


def method(*, timeout: float | None = _UNSET, retry: Retry | None = None) -> Callable[[F], F]:
    """Hints for one agent method: `timeout` (seconds; an async call is cancelled, a sync one
    sees `nalar.cancelled()`, and the future resolves to a `Timeout` error) and `retry` (its
    `nalar.Retry` policy, instead of the agent's)."""
    return _hints(timeout=timeout, retry=retry)


def tool(fn: Any = None, /, *, idempotent: bool = True, timeout: float | None = _UNSET,
         retry: Retry | None = None) -> Any:
    """Mark an agent method as a tool. `idempotent=False` says it has side effects that must
    not happen twice: its result is recorded in the idempotency ledger under the call's future,
    and a retried or re-run call returns the recorded result instead of running again
    (`nalar.idempotency_key()` gives the key to pass on to an external API)."""
    wrap = _hints(timeout=timeout, retry=retry, idempotent=idempotent, tool=True)
    return wrap(fn) if fn is not None else wrap


def _hints(**hints: Any) -> Callable[[F], F]:
    timeout = hints.get("timeout")
    if timeout is not _UNSET:
        _positive("timeout", timeout)
    if hints.get("retry") is not None and not isinstance(hints["retry"], Retry):
        raise TypeError("retry must be a nalar.Retry")
    given = {k: v for k, v in hints.items() if v is not _UNSET and v is not None}

    def wrap(fn: F) -> F:
        setattr(fn, METHOD_ATTR, {**getattr(fn, METHOD_ATTR, {}), **given})
        return fn

    return wrap


def agent_name(name: str) -> str:
    """An agent's name: one subject token, not starting with `_` (names the runtime keeps
    for itself, such as `_driver` and `_signal`, which skip per-call authorization and
    guardrails)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}", name):
        raise ValueError(f"agent name {name!r} must be 1-128 of [A-Za-z0-9_-], starting with a "
                         "letter or digit (names starting with `_` are the runtime's own)")
    return name


def _positive(what: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{what} must be positive, not {value!r}")


def _methods(cls: type, default_timeout: float | None = None,
             default_retry: Retry = DEFAULT_RETRY) -> dict[str, MethodSpec]:
    out: dict[str, MethodSpec] = {}
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = getattr(fn, METHOD_ATTR, {})
        out[name] = MethodSpec(name, inspect.iscoroutinefunction(fn), inspect.signature(fn),
                               inspect.getdoc(fn), hints.get("timeout", default_timeout),
                               hints.get("retry", default_retry),
                               bool(hints.get("idempotent", True)), bool(hints.get("tool")))
    return out


@overload
def agent(cls: C, /) -> C: ...
@overload
def agent(*, name: str | None = None, concurrency: int = 1, stateful: bool = False,
          min_instances: int = 1, max_instances: int | None = None,
          resources: dict[str, float] | None = None,
          timeout: float | None = None, retry: Retry | None = None) -> Callable[[C], C]: ...


def agent(cls: Any = None, /, *, name: str | None = None, concurrency: int = 1,
          stateful: bool = False, min_instances: int = 1, max_instances: int | None = None,
          resources: dict[str, float] | None = None, timeout: float | None = None,
          retry: Retry | None = None) -> Any:
    """Mark a class as an agent. `concurrency` is calls in flight per instance (default 1, so
    mutable attributes are safe unless the author opts in); `timeout` and `retry` are the
    defaults of every method (`@nalar.method(...)` or `@nalar.tool(...)` override them)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if min_instances < 0 or (max_instances is not None and max_instances < max(1, min_instances)):
        raise ValueError("need 0 <= min_instances <= max_instances and max_instances >= 1")
    if any(not isinstance(v, int | float) or v < 0 for v in (resources or {}).values()):
        raise ValueError("resources must map names to non-negative numbers")
    _positive("timeout", timeout)
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError("retry must be a nalar.Retry")

    def wrap(c: C) -> C:
        spec = AgentSpec(name=agent_name(name or c.__name__), cls=c, concurrency=concurrency,
                         stateful=stateful, min_instances=min_instances,
                         max_instances=max_instances, resources=dict(resources or {}),
                         methods=_methods(c, timeout, retry or DEFAULT_RETRY),
                         uses_state=_uses_state(c))
        setattr(c, AGENT_ATTR, spec)
        return c

    return wrap(cls) if cls is not None else wrap


@overload
def workflow(fn: F, /) -> F: ...
@overload
def workflow(*, name: str | None = None) -> Callable[[F], F]: ...


def workflow(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Mark a function (sync or async) as a workflow; its parameters are the run's input."""

    def wrap(f: F) -> F:
        spec = WorkflowSpec(name=name or f.__name__, fn=f,
                            is_async=inspect.iscoroutinefunction(f),
                            signature=inspect.signature(f), doc=inspect.getdoc(f))
        setattr(f, WORKFLOW_ATTR, spec)
        return f

    return wrap(fn) if fn is not None else wrap


def agent_spec(obj: Any) -> AgentSpec | None:
    spec = obj.__dict__.get(AGENT_ATTR) if isinstance(obj, type) else None
    return spec if isinstance(spec, AgentSpec) else None


def workflow_spec(obj: Any) -> WorkflowSpec | None:
    spec = getattr(obj, WORKFLOW_ATTR, None)
    return spec if isinstance(spec, WorkflowSpec) else None
