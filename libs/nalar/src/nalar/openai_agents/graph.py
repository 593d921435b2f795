"""An SDK agent graph made to run on Nalar, the user's objects untouched: every agent reachable
from the entry agent (through handoffs and agents-as-tools) is copied (`Agent.clone`), and in
the copies

- each function tool runs as a future on the built-in `tools` agent, a method named after the
  tool: in the driver its `on_invoke_tool` submits the call; on the host the method runs the
  tool's own `on_invoke_tool` (JSON parsing, validation, the user's function);
- an agent used as a tool (`Agent.as_tool`) runs its nested `Runner` inline in the driver,
  on the copy of its agent (its model calls and tools futures again), one at a time per level
  so a driver that runs again numbers its futures the same way;
- a handoff leads to the copy of its target agent.

The graph is built when the user's module is imported (on every host the same), and the
`tools` agent's methods are the functions `host_function` makes, found by `load_app` through
the workflow's `__nalar_tools__`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import types
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from agents import Agent
from agents.exceptions import ModelBehaviorError, ToolTimeoutError, UserError
from agents.handoffs import Handoff
from agents.items import ItemHelpers
from agents.models.interface import Model
from agents.tool import (
    FunctionTool,
    default_tool_timeout_error_message,
    maybe_invoke_function_tool_failure_error_function,
    set_function_tool_failure_error_function,
)
from agents.tool_context import ToolContext
from nalar_common.errors import Cancelled, GuardrailExceeded, NalarError, Timeout
from pydantic import TypeAdapter

from nalar.loop.tools import FUNCTION_TOOLS_AGENT, LoopTool
from nalar.registry import METHOD_ATTR
from nalar.stub import stub
from nalar.toolspec import TOOL_NAME, tool_spec

STOPS_THE_RUN = (GuardrailExceeded, Cancelled)  # any other error of a tool: the model's
# the lock agents-as-tools of one level take turns on (set per run by the workflow)
INLINE: ContextVar[asyncio.Lock | None] = ContextVar("nalar_oai_inline", default=None)
_JSON = TypeAdapter(Any)
# host functions by tool name, so that two workflows with the same tool share its function
_FUNCTIONS: dict[str, tuple[FunctionTool, Callable[..., Any]]] = {}


class AgentGraph:
    """The copies of an entry agent and everything it reaches, and their function tools."""

    def __init__(self, entry: Agent[Any]) -> None:
        if not isinstance(entry, Agent):
            raise TypeError(f"an OpenAI Agents SDK `Agent` is needed, not {entry!r}")
        self._copies: dict[int, Agent[Any]] = {}
        self._keep: list[Any] = []  # the user's objects stay alive while their ids are keys
        self.tools: dict[str, LoopTool] = {}
        self._originals: dict[str, FunctionTool] = {}
        self.name = entry.name
        self.entry = self.agent(entry)

    def copy_of(self, agent: Any) -> Agent[Any]:
        """The copy of an agent of the graph (`agent` itself when it is one)."""
        if any(c is agent for c in self._copies.values()):
            return agent  # type: ignore[no-any-return]
        found = self._copies.get(id(agent))
        if found is None:
            raise UserError(f"agent {getattr(agent, 'name', agent)!r} is not reachable from the "
                            "workflow's agent when it is registered (a handoff must name its "
                            "agent: agents.handoff(agent) or the agent itself)")
        return found

    def agent(self, agent: Agent[Any]) -> Agent[Any]:
        known = self._copies.get(id(agent))
        if known is not None:
            return known
        if agent.mcp_servers:
            raise TypeError(f"agent {agent.name!r}: MCP servers are not supported on Nalar "
                            "(wrap what they do in function tools)")
        clone = agent.clone()
        self._copies[id(agent)] = clone
        self._keep.append(agent)
        if isinstance(agent.model, Model):  # a model object of its own: Nalar's engine instead
            clone.model = None
        clone.tools = [self._tool(agent, t) for t in agent.tools]
        clone.handoffs = [self.agent(h) if isinstance(h, Agent) else self._handoff(h)
                          for h in agent.handoffs]
        return clone

    # -- tools -----------------------------------------------------------------------------
    def _tool(self, owner: Agent[Any], tool: Any) -> Any:
        if not isinstance(tool, FunctionTool):
            raise TypeError(f"agent {owner.name!r}: tool {getattr(tool, 'name', tool)!r} is a "
                            f"{type(tool).__name__}; only function tools and agents-as-tools "
                            "run on Nalar (hosted tools need the Responses API)")
        if tool._is_agent_tool or tool._is_codex_tool:
            if not isinstance(tool._agent_instance, Agent):
                raise TypeError(f"agent {owner.name!r}: tool {tool.name!r} runs an agent Nalar "
                                "cannot see (use Agent.as_tool)")
            return self._agent_tool(tool)
        name = tool.name
        known = self._originals.setdefault(name, tool)
        if known is not tool:
            raise ValueError(f"two different function tools are named {name!r} in the agents "
                             f"reachable from {self.name!r}: give one a name_override "
                             f"(`tools.{name}` must name one tool)")
        if not TOOL_NAME.fullmatch(name):
            raise ValueError(f"tool name {name!r} must be 1-64 of [A-Za-z0-9_-] on Nalar")
        fn = host_function(tool)
        spec = replace(tool_spec(fn, name=name, description=tool.description),
                       parameters=tool.params_json_schema)
        self.tools[name] = LoopTool(spec, agent=FUNCTION_TOOLS_AGENT, method=name, fn=fn)
        return _remote(tool)

    def _agent_tool(self, tool: FunctionTool) -> FunctionTool:
        """`Agent.as_tool`: the same tool, its nested run on the copy of its agent and on the
        workflow's run config (the model provider included)."""
        inner = self.agent(tool._agent_instance)
        invoker: Any = tool.on_invoke_tool
        impl = getattr(invoker, "_invoke_tool_impl", None)
        code = getattr(impl, "__code__", None)
        if impl is None or code is None or "self" not in code.co_freevars:
            raise TypeError(f"agent tool {tool.name!r}: this openai-agents version builds "
                            "agents-as-tools in a way nalar.openai_agents does not know")
        cells = tuple(types.CellType(inner) if n == "self" else
                      types.CellType(None) if n == "run_config" else c
                      for n, c in zip(code.co_freevars, impl.__closure__ or (), strict=True))
        rebound = types.FunctionType(code, impl.__globals__, impl.__name__, impl.__defaults__,
                                     cells)
        rebound.__kwdefaults__ = impl.__kwdefaults__
        clone = copy.copy(tool)
        clone._agent_instance = inner
        maker: Any = type(invoker)  # the SDK's failure-handling invoker, around the new run
        bound = maker(rebound, invoker._on_handled_error).__agents_bind_function_tool__(clone)

        async def run_inline(ctx: Any, input_json: str) -> Any:
            lock = INLINE.get()
            if lock is None:
                return await bound(ctx, input_json)
            async with lock:  # one at a time: its futures numbered in the same order always
                token = INLINE.set(asyncio.Lock())  # its own agents-as-tools: the next level
                try:
                    return await bound(ctx, input_json)
                finally:
                    INLINE.reset(token)

        clone.on_invoke_tool = run_inline
        return clone

    def _handoff(self, handoff: Handoff[Any, Any]) -> Handoff[Any, Any]:
        target = handoff._agent_ref() if handoff._agent_ref is not None else None
        if not isinstance(target, Agent):
            raise TypeError(f"handoff {handoff.tool_name!r}: its agent is unknown (make it with "
                            "agents.handoff(agent), or list the agent itself)")
        target_copy = self.agent(target)
        original = handoff.on_invoke_handoff
        clone = copy.copy(handoff)

        async def invoke(ctx: Any, input_json: str | None = None) -> Any:
            return self.copy_of(await original(ctx, input_json))  # type: ignore[arg-type]

        clone.on_invoke_handoff = invoke
        clone._agent_ref = weakref.ref(target_copy)
        return clone


def _remote(tool: FunctionTool) -> FunctionTool:
    """The driver's copy of a function tool: its call a future on the `tools` agent; a failed
    future (denied, the tool raised, timed out) is what the tool's `failure_error_function`
    makes of it, as in the SDK, except a guardrail stop or a cancellation: they end the run."""
    clone = copy.copy(tool)
    timeout, clone.timeout_seconds = tool.timeout_seconds, None  # a Nalar deadline instead

    async def invoke(ctx: Any, input_json: str) -> Any:
        try:
            arguments = json.loads(input_json) if input_json else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return await _failed(clone, ctx, ModelBehaviorError(
                f"Invalid JSON input for tool {tool.name}: {input_json}"))
        try:
            return await getattr(stub(FUNCTION_TOOLS_AGENT, timeout=timeout),
                                 tool.name)(**arguments)
        except STOPS_THE_RUN:
            raise
        except Timeout as exc:
            if timeout is None:
                return await _failed(clone, ctx, exc)
            error = ToolTimeoutError(tool.name, timeout)
            if tool.timeout_behavior == "raise_exception":
                raise error from exc
            if tool.timeout_error_function is not None:
                said: Any = tool.timeout_error_function(ctx, error)
                return await said if asyncio.iscoroutine(said) else said
            return default_tool_timeout_error_message(tool_name=tool.name,
                                                      timeout_seconds=timeout)
        except NalarError as exc:
            return await _failed(clone, ctx, exc)

    clone.on_invoke_tool = invoke
    return clone


async def _failed(tool: FunctionTool, ctx: Any, error: Exception) -> Any:
    said = await maybe_invoke_function_tool_failure_error_function(
        function_tool=tool, context=ctx, error=error)
    if said is None:  # the tool says failures end the run (failure_error_function=None)
        raise error
    return said


def host_function(tool: FunctionTool) -> Callable[..., Any]:
    """The `tools` agent's method for an SDK function tool: the tool's own `on_invoke_tool`
    with a `ToolContext` (no run context object: it stays in the driver) and the arguments
    as JSON; an exception fails the future (the driver asks the tool's failure function)."""
    known = _FUNCTIONS.get(tool.name)
    if known is not None and known[0] is tool:
        return known[1]
    raw = set_function_tool_failure_error_function(copy.copy(tool), None)

    async def run(**arguments: Any) -> Any:
        text = json.dumps(arguments)
        ctx: ToolContext[Any] = ToolContext(context=None, tool_name=tool.name,
                                            tool_call_id="", tool_arguments=text)
        return tool_output(raw, await raw.on_invoke_tool(ctx, text))

    run.__name__ = run.__qualname__ = tool.name
    run.__doc__ = tool.description
    # `@nalar.tool(idempotent=False, timeout=..., retry=...)` over `@function_tool`: its hints
    setattr(run, METHOD_ATTR, dict(getattr(tool, METHOD_ATTR, None) or {}))
    _FUNCTIONS[tool.name] = (tool, run)
    return run


def tool_output(tool: FunctionTool, output: Any) -> Any:
    """A tool's answer as a JSON value the driver's SDK makes the same tool result of: text
    as it is, structured outputs (text, images, files) and a value the tool declares a schema
    for as JSON, anything else the text the SDK would make of it."""
    if isinstance(output, str):
        return output
    if tool._output_type_adapter is not None or tool.output_json_schema is not None or \
            ItemHelpers._convert_tool_output_as_structured(output) is not None:
        return _JSON.dump_python(output, mode="json")
    return str(output)


__all__ = ["INLINE", "AgentGraph", "host_function", "tool_output"]
