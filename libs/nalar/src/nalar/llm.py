"""`nalar.llm`: the LLM interface agents call, on the engine of the agent host they run in.

For now the engine is a deterministic simulated one (same prompt → same text and timings),
so examples and tests are reproducible; real engines (vLLM) plug in behind `Engine`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from nalar.context import current_or_none

_WORDS = ("market", "growth", "risk", "yield", "earnings", "outlook", "demand", "rates",
          "inflation", "margin", "revenue", "guidance", "volatility", "sector", "credit",
          "liquidity", "momentum", "valuation", "dividend", "spread", "stable", "strong",
          "weak", "rising", "falling", "moderate", "the", "and", "with", "for", "is", "of")


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    async def agenerate(self, prompt: str, *, max_tokens: int = 64,
                        session: str | None = None) -> Completion: ...

    def generate(self, prompt: str, *, max_tokens: int = 64,
                 session: str | None = None) -> Completion: ...


@dataclass
class SimulatedEngine:
    """Deterministic stand-in: prefill time per prompt token, fixed time per output token,
    output length drawn from the prompt's hash; `time_scale` shrinks every delay."""

    prefill_s_per_token: float = 0.0002
    time_per_output_token_s: float = 0.02
    time_scale: float = 1.0
    min_output_tokens: int = 8

    def _plan(self, prompt: str, max_tokens: int) -> tuple[Completion, float]:
        digest = hashlib.sha256(prompt.encode()).digest()
        prompt_tokens = max(1, len(prompt.split()))
        span = max(1, max_tokens - self.min_output_tokens + 1)
        n = min(max_tokens, self.min_output_tokens + int.from_bytes(digest[:2], "big") % span)
        words = [_WORDS[digest[i % len(digest)] % len(_WORDS)] for i in range(n)]
        prefill = prompt_tokens * self.prefill_s_per_token
        decode = n * self.time_per_output_token_s
        total = (prefill + decode) * self.time_scale
        timings = {"queue_s": 0.0, "ttft_s": (prefill + self.time_per_output_token_s)
                   * self.time_scale, "total_s": total}
        return Completion(" ".join(words), prompt_tokens, n, 0, timings), total

    async def agenerate(self, prompt: str, *, max_tokens: int = 64,
                        session: str | None = None) -> Completion:
        completion, delay = self._plan(prompt, max_tokens)
        await asyncio.sleep(delay)
        return completion

    def generate(self, prompt: str, *, max_tokens: int = 64,
                 session: str | None = None) -> Completion:
        completion, delay = self._plan(prompt, max_tokens)
        time.sleep(delay)
        return completion


_default = SimulatedEngine()


def engine() -> Engine:
    ctx = current_or_none()
    eng: Any = getattr(ctx.runtime, "engine", None) if ctx else None
    return eng if eng is not None else _default


def _session() -> str | None:
    ctx = current_or_none()
    return ctx.session if ctx else None


def _render(messages: list[dict[str, str]]) -> str:
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)


def generate(prompt: str, *, max_tokens: int = 64) -> Completion:
    """Blocking completion (for sync agent methods, which run in worker threads)."""
    return engine().generate(prompt, max_tokens=max_tokens, session=_session())


async def agenerate(prompt: str, *, max_tokens: int = 64) -> Completion:
    return await engine().agenerate(prompt, max_tokens=max_tokens, session=_session())


def chat(messages: list[dict[str, str]], *, max_tokens: int = 64) -> Completion:
    return generate(_render(messages), max_tokens=max_tokens)


async def achat(messages: list[dict[str, str]], *, max_tokens: int = 64) -> Completion:
    return await agenerate(_render(messages), max_tokens=max_tokens)
