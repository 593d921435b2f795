"""What every engine takes and returns, and the errors it raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# the engine errors live with the rest of the tree, so every process decodes them
from nalar_common.errors import EngineOverloaded as EngineOverloaded
from nalar_common.errors import EngineUnavailable as EngineUnavailable
from nalar_common.errors import PromptTooLong as PromptTooLong


@dataclass(frozen=True)
class LLMRequest:
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    session: str | None = None

    def text(self) -> str:
        """The prompt as one text (chat messages rendered role: content, one per line)."""
        if self.messages is not None:
            return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}"
                             for m in self.messages)
        return self.prompt or ""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # queue_s, ttft_s, total_s
    model: str = ""
    engine: str = ""

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
