"""Stubs: `nalar.stub(Writer).draft(f1)` returns a `Future` at once and never runs user code here.

Generated, typed stubs (`nalar stubs`) subclass `Stub`; this dynamic form serves any agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nalar.context import current
from nalar.future import Future
from nalar.registry import agent_spec


class Stub:
    """Calls an agent's methods through the runtime of the current run."""

    def __init__(self, agent: str | type, *, timeout: float | None = None) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self._timeout = timeout
        if isinstance(agent, str):
            self._agent = agent
        else:
            spec = agent_spec(agent)
            self._agent = spec.name if spec else agent.__name__
        self._methods = set(spec.methods) if not isinstance(agent, str) and spec else None

    def __getattr__(self, method: str) -> Callable[..., Future[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        if self._methods is not None and method not in self._methods:
            raise AttributeError(f"agent {self._agent} has no method {method!r}")

        def call(*args: Any, **kwargs: Any) -> Future[Any]:
            ctx = current()
            if self._timeout is None:
                return ctx.runtime.submit(ctx, self._agent, method, args, kwargs)
            return ctx.runtime.submit(ctx, self._agent, method, args, kwargs,
                                      deadline=time.time() + self._timeout)

        call.__name__ = method
        return call

    def __repr__(self) -> str:
        return f"<Stub {self._agent}>"


def stub(agent: str | type, *, timeout: float | None = None) -> Any:
    """A stub for `agent` (its class or its name). With `timeout`, each call it makes must
    finish within that many seconds of being made, queueing included (and within its run's
    deadline), or its future resolves to a `Timeout` error."""
    return Stub(agent, timeout=timeout)
