"""What every engine takes and returns, and the errors it raises."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# the engine errors live with the rest of the tree, so every process decodes them
from nalar_common.errors import EngineOverloaded as EngineOverloaded
from nalar_common.errors import EngineUnavailable as EngineUnavailable
from nalar_common.errors import PromptTooLong as PromptTooLong


@dataclass(frozen=True)
class LLMRequest:
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    session: str | None = None
    tools: list[dict[str, Any]] | None = None  # OpenAI form: {"type": "function", ...}
    tool_choice: Any = None  # "auto", "none", "required" or {"type": "function", ...}

    def text(self) -> str:
        """The prompt as one text (chat messages rendered role: content, one per line; the
        tool calls a message carries and the tools offered count too)."""
        if self.messages is None:
            return self.prompt or ""
        lines = []
        for m in self.messages:
            line = f"{m.get('role', 'user')}: {m.get('content') or ''}"
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                line += f" [{fn.get('name', '')}({fn.get('arguments', '')})]"
            lines.append(line)
        if self.tools:
            lines.append("tools: " + json.dumps(self.tools, separators=(",", ":")))
        return "\n".join(lines)


@dataclass(frozen=True)
class ToolCall:
    """A call the model proposes: `arguments` is its JSON text, as models send it (it need
    not parse, nor fit the tool's schema: `nalar.toolspec` checks it)."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ToolCall:
        return cls(str(d.get("id") or ""), str(d.get("name") or ""),
                   str(d.get("arguments") or ""))


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # queue_s, ttft_s, total_s
    model: str = ""
    engine: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""  # "stop", "length", "tool_calls" ("" when the engine did not say)

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cached_tokens": self.cached_tokens}


OnToken = Callable[[str], None]


def prompt_tokens(engine: Any, request: LLMRequest) -> int:
    """The request's prompt in the engine's tokens, before it runs (what guardrails reserve):
    the engine's own count where it has one, else an over-estimate (a token per 3 chars)."""
    count = getattr(engine, "count_tokens", None)
    if count is not None:
        return int(count(request))
    return max(1, -(-len(request.text()) // 3))


def model_of(engine: Any) -> str:
    """The model an engine serves (what guardrail prices are looked up by)."""
    return str(getattr(engine, "model", "") or getattr(engine, "name", ""))


class Engine(Protocol):
    name: str

    async def complete(self, request: LLMRequest, on_token: OnToken | None = None) -> Completion:
        """Run one request; `on_token` gets each piece of text as it is produced."""
        ...

    def stats(self) -> dict[str, Any]:
        """Load figures for telemetry (running, waiting, KV use, prefix-cache hits)."""
        ...
