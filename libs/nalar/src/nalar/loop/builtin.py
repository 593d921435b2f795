"""The agents an app with agent loops gets for free: `llm`, whose `turn` is one model call on
the host's engine (each LLM turn a future: routed, prioritised, guarded, journaled),
`tools`, whose methods are the app's plain-function tools (each tool call a future), and
`conversations`, a session's conversation items kept in managed state (what an OpenAI Agents
SDK `Session` is on Nalar).

`load_app` adds them when the app has an `AgentLoop` or module-level `@nalar.tool`
functions; policy.yaml and guardrails.yaml name them like any agent (`llm`, `llm.turn`,
`tools.get_weather`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from nalar.llm import achat
from nalar.registry import METHOD_ATTR, agent
from nalar.state import managed_list
from nalar.toolspec import tool_spec

LLM_AGENT = "llm"
LLM_CONCURRENCY = 64  # turns in flight per host: the engine batches them


@agent(name=LLM_AGENT, concurrency=LLM_CONCURRENCY)
class LLM:
    """One model call per future, on the engine of the host it runs on."""

    async def turn(self, messages: list[dict[str, Any]],
                   tools: list[dict[str, Any]] | None = None, tool_choice: Any = None,
                   max_tokens: int = 512, temperature: float = 0.0) -> dict[str, Any]:
        """The model's next message: its text and the tool calls it proposes."""
        c = await achat(messages, tools=tools, tool_choice=tool_choice,
                            max_tokens=max_tokens, temperature=temperature)
        return {"content": c.text, "tool_calls": [t.to_dict() for t in c.tool_calls],
                "finish_reason": c.finish_reason, "model": c.model, "usage": c.usage()}


CONVERSATIONS_AGENT = "conversations"


@agent(name=CONVERSATIONS_AGENT, concurrency=16)
class Conversations:
    """The conversation items of the calling run's session, in managed state: kept with the
    session (Redis), committed only when a call succeeds, the same on any host."""

    def items(self, limit: int | None = None) -> list[Any]:
        """The items in order; with `limit`, the latest `limit` of them."""
        history = managed_list("items")
        return list(history[-limit:] if limit else history)

    def add(self, items: list[Any]) -> int:
        """Append items; how many there are now."""
        history = managed_list("items")
        history.extend(items)
        return len(history)

    def pop(self) -> Any:
        """Remove and return the latest item (None when there is none)."""
        history = managed_list("items")
        return history.pop() if history else None

    def clear(self) -> None:
        managed_list("items").clear()


def function_tools_agent(functions: dict[str, Callable[..., Any]]) -> type:
    """An agent class `tools` with one method per function: it checks the arguments against
    the function's parameters again (a call need not come from a loop) and calls it; the
    function's `@nalar.tool` hints (`idempotent`, `timeout`, `retry`) become the method's."""
    namespace: dict[str, Any] = {"__doc__": "The app's plain-function tools.",
                                 "__module__": __name__}
    for name, fn in functions.items():
        namespace[name] = _method(name, fn)
    cls = type("FunctionTools", (), namespace)
    return agent(name="tools", concurrency=16)(cls)


def _method(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    spec = tool_spec(fn)
    method: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):
        async def method(self: Any, **arguments: Any) -> Any:
            return await fn(**spec.check(arguments))
    else:
        def method(self: Any, **arguments: Any) -> Any:
            return fn(**spec.check(arguments))
    method.__name__ = method.__qualname__ = name
    method.__doc__ = fn.__doc__
    setattr(method, METHOD_ATTR, {"tool": True, **getattr(fn, METHOD_ATTR, {})})
    return method
