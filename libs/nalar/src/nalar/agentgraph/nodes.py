"""The functions the built-in `tools` agent runs for a graph's nodes (`tools.<graph>__<node>`):
one execution of a Task or a Plan on an agent host, its result as JSON, with the LLM usage
it spent (what its execution record reports)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from nalar_common.errors import InvalidInput
from pydantic_core import to_jsonable_python

from nalar.agentgraph.model import Human, Node, PlanResult, TaskResult
from nalar.context import current_or_none
from nalar.registry import METHOD_ATTR
from nalar.toolspec import tool_name


def method_name(graph: str, version: str, node: str) -> str:
    """The `tools` method of a node: unique per graph, version (its dots as `_`: a version
    has no `_` of its own) and node."""
    return tool_name(f"{graph}__v{version.replace('.', '_')}__{node}")


def node_function(graph: str, version: str, node: Node) -> Callable[..., Any]:
    """`fn(input)` for a Task, `fn(results)` for a Plan; the host runs a sync one in a worker
    thread and awaits an async one. A Task/Plan class gets a new instance per execution."""
    impl = node.impl
    if isinstance(impl, Human):
        raise TypeError(f"node {node.name} is done by a person: its lifetime waits in the "
                        "driver, no host runs it")
    body = (getattr(impl, "run" if node.kind == "task" else "decide")
            if isinstance(impl, type) else impl)

    def call(arg: Any) -> Any:
        target = getattr(impl(), "run" if node.kind == "task" else "decide") \
            if isinstance(impl, type) else impl
        return target(arg)

    shape = _task_result if node.kind == "task" else _plan_result
    fn: Callable[..., Any]
    if inspect.iscoroutinefunction(body):
        async def fn(arg: Any = None) -> dict[str, Any]:
            return _outcome(shape(node.name, await call(arg)))
    else:
        def fn(arg: Any = None) -> dict[str, Any]:
            value = call(arg)
            if asyncio.iscoroutine(value):
                value.close()
                raise InvalidInput(f"node {node.name}: a sync function returned a coroutine")
            return _outcome(shape(node.name, value))

    fn.__name__ = fn.__qualname__ = method_name(graph, version, node.name)
    fn.__module__ = __name__
    fn.__doc__ = f"{node.kind.capitalize()} {node.name!r} of the agent graph {graph} {version}."
    # a step of a graph, not a tool a model calls: a replay serves it like any call
    setattr(fn, METHOD_ATTR, {"tool": False})
    return fn


def _task_result(node: str, value: Any) -> dict[str, Any]:
    if isinstance(value, TaskResult):
        return {"output": to_jsonable_python(value.output, fallback=str), "final": value.final}
    return {"output": to_jsonable_python(value, fallback=str), "final": False}


def _plan_result(node: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        value = PlanResult(next_tasks=tuple(value))
    if isinstance(value, str):
        value = PlanResult(next_tasks=(value,))
    if not isinstance(value, PlanResult):
        raise InvalidInput(f"plan {node} returned {type(value).__name__}: a plan returns a "
                           "PlanResult, or the names of the tasks to run next")
    return {"next_tasks": list(value.next_tasks), "final": value.final,
            "output": to_jsonable_python(value.output, fallback=str)}


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    """The result with what the execution spent on LLM requests (its policy telemetry)."""
    ctx = current_or_none()
    usage: Mapping[str, Any] = ctx.usage if ctx is not None else {}
    result["usage"] = {"tokens_used": int(usage.get("prompt_tokens", 0)) +
                       int(usage.get("completion_tokens", 0)),
                       "llm_calls": int(usage.get("llm_calls", 0))}
    return result
