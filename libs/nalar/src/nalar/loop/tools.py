"""How an agent loop reaches each of its tools: every tool call a model proposes becomes a
future the runtime executes (never code the loop runs itself).

- a plain function (module level, `@nalar.tool` or not) is a method of the built-in `tools`
  agent, so policy.yaml names it `tools.<function>`;
- a method of an `@nalar.agent` class (`Calculator.add`) is a call through that agent's stub
  (`Calculator.add` in policy.yaml);
- another `AgentLoop` is run in the caller's run: its turns and tool calls are futures of it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nalar.registry import agent_spec
from nalar.stub import stub
from nalar.toolspec import ToolSpec, tool_spec

if TYPE_CHECKING:
    from nalar.loop.agentloop import AgentLoop

FUNCTION_TOOLS_AGENT = "tools"
# a workflow whose steps are LLM turns and tools: its tools by name (`LoopTool`s), so that
# `load_app` gives its app the `llm` and `tools` agents they run on
TOOLS_ATTR = "__nalar_tools__"


@dataclass(frozen=True)
class LoopTool:
    spec: ToolSpec
    agent: str = ""  # the agent whose method runs it ("" for a loop run inline)
    method: str = ""
    loop: AgentLoop | None = None
    fn: Callable[..., Any] | None = None  # a plain function (served by the `tools` agent)

    def start(self, kwargs: dict[str, Any]) -> Any:
        """The tool's future for checked arguments (an inline loop: a coroutine)."""
        if self.loop is not None:
            return self.loop.run(str(kwargs["input"]))
        return getattr(stub(self.agent), self.method)(**self.spec.jsonable(kwargs))


def resolve(obj: Any) -> LoopTool:
    """A tool of a loop from a function or an agent method its author listed (another loop
    is made a tool by `AgentLoop` itself)."""
    if not callable(obj) or not hasattr(obj, "__qualname__"):
        raise TypeError(f"a tool must be a function, an agent method or an AgentLoop, "
                        f"not {obj!r}")
    owner = _agent_class(obj)
    if owner is not None:
        spec = agent_spec(owner)
        assert spec is not None
        if obj.__name__ not in spec.methods:
            raise ValueError(f"{spec.name}.{obj.__name__} is not a public method of the agent")
        return LoopTool(tool_spec(obj), agent=spec.name, method=obj.__name__)
    if "<locals>" in obj.__qualname__ or "." in obj.__qualname__:
        raise ValueError(f"tool {obj.__qualname__}: a function tool must be defined at module "
                         "level (hosts import it by name), or be a method of an @nalar.agent")
    if not inspect.isfunction(obj):
        raise TypeError(f"tool {obj!r} must be a plain function")
    return LoopTool(tool_spec(obj), agent=FUNCTION_TOOLS_AGENT, method=obj.__name__, fn=obj)


def _agent_class(fn: Any) -> type | None:
    """The @nalar.agent class a function is a method of (found by module and qualname)."""
    parts = getattr(fn, "__qualname__", "").split(".")
    if len(parts) != 2:
        return None
    try:
        owner = getattr(importlib.import_module(fn.__module__), parts[0], None)
    except ImportError:
        return None
    return owner if isinstance(owner, type) and agent_spec(owner) is not None else None
