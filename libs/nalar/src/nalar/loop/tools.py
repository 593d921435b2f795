"""How an agent loop reaches each of its tools: every tool call a model proposes becomes a
future the runtime executes (never code the loop runs itself).

- a plain function (module level, `@nalar.tool` or not) is a method of the built-in `tools`
  agent, so policy.yaml names it `tools.<function>`;
- a method of an `@nalar.agent` class (`Calculator.add`, or `(Calculator, "add")` for a
  method the agent inherits) is a call through that agent's stub (`Calculator.add` in
  policy.yaml);
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

    def start(self, arguments: str | dict[str, Any] | None) -> Any:
        """The tool's future for the arguments a model proposed, checked first
        (`ToolArgumentsError`); an inline loop: a coroutine. Validators run once on the
        values a tool gets: a function tool gets the proposed arguments and the `tools` agent
        checks them (as any caller's), an agent method gets them checked here."""
        if self.loop is not None:
            return self.loop.answer(str(self.spec.check(arguments)["input"]))
        call = getattr(stub(self.agent), self.method)
        if self.fn is not None:
            self.spec.check(arguments)  # what does not fit is the model's to hear, now
            return call(**self.spec.parse(arguments))
        return call(**self.spec.checked_json(arguments))


def resolve(obj: Any) -> LoopTool:
    """A tool of a loop from a function or an agent method its author listed (another loop
    is made a tool by `AgentLoop` itself). `(AgentClass, "method")` names the agent
    explicitly: a method an agent inherits is found on the class that defines it."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], type) and \
            isinstance(obj[1], str):
        spec = agent_spec(obj[0])
        if spec is None or obj[1] not in spec.methods:
            raise ValueError(f"tool {obj!r}: not a public method of an @nalar.agent class")
        return LoopTool(tool_spec(getattr(obj[0], obj[1])), agent=spec.name, method=obj[1])
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
