"""A simulated LLM engine with the behaviour that matters for serving decisions.

Continuous batching within a slot and KV-token budget; time per output token that grows with
the batch; prefill time proportional to the *uncached* prompt tokens; a prefix cache per
session with a capacity and LRU eviction (a session served elsewhere has no cache here, or
pays a transfer at a set bandwidth); heavy-tailed (log-normal) output lengths drawn from a
seed and the prompt, so the same prompt gives the same text wherever it runs; an overload
mode that fails requests past the KV budget; and a time scale that runs minutes in seconds.

Tool calling, deterministically: offered tools (and `tool_choice` not "none"), it calls one
when the conversation's last message is not a tool result (always, with "required" or a
named tool), choosing the tool and filling its arguments from the schema by the same seed;
after tool results it answers in text. `script` (a list, one entry per assistant turn of the
conversation: `{"tool_calls": [{"name": ..., "arguments": {...} or "raw text"}]}` or
`{"text": ...}`; or such lists by a key of the first user message) makes a test say exactly
what each turn proposes, bad arguments included.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from nalar.engines.base import (
    Completion,
    EngineOverloaded,
    LLMRequest,
    OnToken,
    PromptTooLong,
    ToolCall,
)
from nalar.engines.simtools import propose, scripted

_WORDS = ("market", "growth", "risk", "yield", "earnings", "outlook", "demand", "rates",
          "inflation", "margin", "revenue", "guidance", "volatility", "sector", "credit",
          "liquidity", "momentum", "valuation", "dividend", "spread", "stable", "strong",
          "weak", "rising", "falling", "moderate", "the", "and", "with", "for", "is", "of")


@dataclass
class SimulatedParams:
    """Defaults approximate an 8B model (fp16) on one A100-80GB with vLLM: see
    docs/engines.md for where each figure comes from."""

    max_batch: int = 256  # sequences decoded together (vLLM's default max_num_seqs)
    kv_budget_tokens: int = 400_000  # KV cache capacity in tokens
    max_model_len: int = 8192  # context: a longer prompt is refused
    prefill_tokens_per_s: float = 8_000.0
    tpot_s: float = 0.012  # time per output token at batch 1
    tpot_per_seq_s: float = 0.00025  # added per sequence in the batch
    cache_capacity_tokens: int = 200_000  # prefix cache kept for sessions (LRU)
    cache_transfer_tokens_per_s: float | None = None  # None: a moved session recomputes
    output_median_tokens: int = 120
    output_sigma: float = 0.9  # log-normal spread: a heavy tail of long answers
    overload: Literal["queue", "fail"] = "queue"
    time_scale: float = 1.0
    seed: int = 0
    # what each assistant turn says (tests): a list, or scripts by a key of the first user
    # message
    script: list[dict[str, Any]] | dict[str, list[dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        scripts = self.script if isinstance(self.script, dict) else {"": self.script or []}
        for key, steps in scripts.items():
            if not isinstance(steps, list):
                raise ValueError(f"script {key!r} must be a list of turns, not {steps!r}")
            for i, step in enumerate(steps):
                _check_step(f"script{'[' + repr(key) + ']' if key else ''}[{i}]", step)


def _check_step(where: str, step: Any) -> None:
    calls = step.get("tool_calls") if isinstance(step, dict) else None
    if not isinstance(step, dict) or len(step) != 1 or \
            not (set(step) <= {"tool_calls", "text"}) or \
            (calls is not None and not (isinstance(calls, list) and all(
                isinstance(c, dict) and isinstance(c.get("name"), str) and
                set(c) <= {"name", "arguments"} for c in calls))):
        raise ValueError(f"{where} must be {{'tool_calls': [{{'name': ..., 'arguments': ...}}]}}"
                         f" or {{'text': ...}}, not {step!r}")


@dataclass(eq=False)
class _Seq:
    request: LLMRequest
    prompt_tokens: int
    output_tokens: int
    words: list[str]
    calls: tuple[ToolCall, ...]
    on_token: OnToken | None
    done: asyncio.Future[Completion]
    submitted: float
    cached: int = 0
    ready_at: float = 0.0
    started: float = 0.0
    first_token: float = 0.0
    emitted: int = 0

    @property
    def kv(self) -> int:
        return self.prompt_tokens + self.output_tokens


@dataclass
class _PrefixCache:
    capacity: int
    sessions: OrderedDict[str, int] = field(default_factory=OrderedDict)
    queries: int = 0
    hits: int = 0

    def lookup(self, session: str | None, prompt_tokens: int) -> int:
        self.queries += 1
        cached = min(self.sessions.get(session, 0), prompt_tokens) if session else 0
        if cached:
            self.hits += 1
            self.sessions.move_to_end(session)  # type: ignore[arg-type]
        return cached

    def store(self, session: str | None, tokens: int) -> None:
        if not session:
            return
        self.sessions[session] = tokens
        self.sessions.move_to_end(session)
        while sum(self.sessions.values()) > self.capacity and len(self.sessions) > 1:
            self.sessions.popitem(last=False)

    def holds(self, session: str) -> bool:
        return session in self.sessions


class SimulatedEngine:
    name = "simulated"
    model = "simulated"

    def __init__(self, params: SimulatedParams | None = None, **overrides: Any) -> None:
        self.p = params or SimulatedParams()
        for k, v in overrides.items():
            setattr(self.p, k, v)
        self.p.__post_init__()  # overrides are checked too
        self.cache = _PrefixCache(self.p.cache_capacity_tokens)
        self._waiting: list[_Seq] = []
        self._running: list[_Seq] = []
        self._kv_used = 0
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.completed = 0
        self._busy_s = 0.0  # wall time with at least one sequence admitted
        self._seq_s = 0.0  # sequence-seconds: the running sequences integrated over time
        self._counted_at = time.monotonic()

    # -- public ------------------------------------------------------------------------------
    @staticmethod
    def count_tokens(request: LLMRequest) -> int:
        return max(1, len(request.text().split()))

    async def complete(self, request: LLMRequest, on_token: OnToken | None = None) -> Completion:
        text = request.text()
        prompt_tokens = self.count_tokens(request)
        if prompt_tokens > self.p.max_model_len:
            raise PromptTooLong(f"prompt of {prompt_tokens} tokens exceeds the model's context "
                                f"of {self.p.max_model_len}",
                                details={"limit": self.p.max_model_len, "tokens": prompt_tokens})
        words, calls = self._answer(text, request)
        need = prompt_tokens + len(words)
        if need > self.p.kv_budget_tokens:
            raise PromptTooLong(f"request needs {need} KV tokens, the engine has "
                                f"{self.p.kv_budget_tokens}",
                                details={"limit": self.p.kv_budget_tokens, "tokens": need})
        if self.p.overload == "fail" and self._kv_used + need > self.p.kv_budget_tokens:
            raise EngineOverloaded(f"KV cache full ({self._kv_used} of "
                                   f"{self.p.kv_budget_tokens} tokens in use)",
                                   details={"kv_used": self._kv_used,
                                            "kv_budget": self.p.kv_budget_tokens})
        loop = asyncio.get_running_loop()
        seq = _Seq(request, prompt_tokens, len(words), words, calls, on_token,
                   loop.create_future(), loop.time())
        self._waiting.append(seq)
        self._ensure_loop()
        assert self._wake is not None
        self._wake.set()
        return await seq.done

    def stats(self) -> dict[str, Any]:
        return {"engine": self.name, "running": len(self._running),
                "waiting": len(self._waiting), "kv_used_tokens": self._kv_used,
                "kv_budget_tokens": self.p.kv_budget_tokens,
                "kv_usage": self._kv_used / self.p.kv_budget_tokens,
                # wall-clock rate (time-scaled): what recomputing a moved session's KV costs
                "prefill_tokens_per_s": self.p.prefill_tokens_per_s / max(self.p.time_scale,
                                                                          1e-9),
                "prefix_cache_queries": self.cache.queries,
                "prefix_cache_hits": self.cache.hits, "completed": self.completed,
                "busy_s": round(self.busy_s(), 4), "seq_s": round(self.seq_s(), 4)}

    def seq_s(self) -> float:
        """Sequence-seconds served: how much work it did (with continuous batching an
        engine is busy nearly always under load; this still tells a loaded one)."""
        return self._seq_s + len(self._running) * (time.monotonic() - self._counted_at)

    def busy_s(self) -> float:
        """Wall seconds this engine has had work admitted."""
        return self._busy_s + (time.monotonic() - self._counted_at if self._running else 0.0)

    def _count(self) -> None:
        """Bring busy time and sequence-seconds up to now (before the running set changes)."""
        now = time.monotonic()
        if self._running:
            self._busy_s += now - self._counted_at
            self._seq_s += len(self._running) * (now - self._counted_at)
        self._counted_at = now

    def holds_session(self, session: str) -> bool:
        return self.cache.holds(session)

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()

    # -- model -----------------------------------------------------------------------------------
    def _answer(self, text: str, request: LLMRequest) -> tuple[list[str], tuple[ToolCall, ...]]:
        """Deterministic in (seed, prompt): length log-normal, words from the prompt's hash;
        or the tool calls it proposes (their JSON is what it "generates")."""
        digest = hashlib.sha256(f"{self.p.seed}|{text}".encode()).digest()
        rng = random.Random(digest)
        step = scripted(self.p.script, request)
        if step is not None and step.get("text") is not None:
            words = str(step["text"]).split() or [""]
            return words[:request.max_tokens], ()
        calls = propose(request, rng, digest.hex()[:12], step)
        if calls:
            words = " ".join(f"{c.name} {c.arguments}" for c in calls).split()
            return words[:max(1, request.max_tokens)], calls
        n = int(rng.lognormvariate(math.log(self.p.output_median_tokens), self.p.output_sigma))
        n = max(1, min(n, request.max_tokens))
        return [_WORDS[rng.randrange(len(_WORDS))] for _ in range(n)], ()

    # -- scheduler -------------------------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._wake = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._schedule())

    def _admit(self, now: float) -> None:
        scale = self.p.time_scale
        while self._waiting and len(self._running) < self.p.max_batch and \
                self._kv_used + self._waiting[0].kv <= self.p.kv_budget_tokens:
            seq = self._waiting.pop(0)
            seq.cached = self.cache.lookup(seq.request.session, seq.prompt_tokens)
            transfer = 0.0
            if seq.cached == 0 and seq.request.session and self.p.cache_transfer_tokens_per_s:
                # a session that moved here brings its KV cache along instead of recomputing
                # it: the prompt's prefix arrives at the transfer bandwidth
                seq.cached = max(0, seq.prompt_tokens - 1)
                transfer = seq.cached / self.p.cache_transfer_tokens_per_s
            uncached = seq.prompt_tokens - seq.cached
            prefill = transfer + uncached / self.p.prefill_tokens_per_s
            seq.started = now
            seq.ready_at = now + prefill * scale
            self._kv_used += seq.kv
            self._count()
            self._running.append(seq)

    async def _schedule(self) -> None:
        """One decode step for every running sequence whose prefill is over, again and again;
        new requests join between steps (continuous batching)."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._admit(loop.time())
            if not self._running:
                if not self._waiting:
                    return  # idle: the next request starts the loop again
                self._wake.clear()
                await self._wake.wait()
                continue
            decoding = [s for s in self._running if s.ready_at <= loop.time()]
            if not decoding:
                await asyncio.sleep(max(0.0, min(s.ready_at for s in self._running)
                                        - loop.time()))
                continue
            step = (self.p.tpot_s + self.p.tpot_per_seq_s * len(decoding)) * self.p.time_scale
            await asyncio.sleep(step)
            now = loop.time()
            for seq in decoding:
                self._emit(seq, now)

    def _emit(self, seq: _Seq, now: float) -> None:
        word = seq.words[seq.emitted]
        seq.emitted += 1
        if seq.emitted == 1:
            seq.first_token = now
        if seq.on_token is not None and not seq.calls:  # a tool call is not text
            try:
                seq.on_token(word if seq.emitted == 1 else " " + word)
            except Exception:
                pass
        if seq.emitted < seq.output_tokens:
            return
        self._count()
        self._running.remove(seq)
        self._kv_used -= seq.kv
        self.cache.store(seq.request.session, seq.kv)
        self.completed += 1
        completion = Completion(
            "" if seq.calls else " ".join(seq.words), seq.prompt_tokens, seq.output_tokens,
            seq.cached,
            {"queue_s": seq.started - seq.submitted, "ttft_s": seq.first_token - seq.submitted,
             "total_s": now - seq.submitted}, model="simulated", engine=self.name,
            tool_calls=seq.calls,
            finish_reason="tool_calls" if seq.calls else
            "length" if seq.output_tokens >= seq.request.max_tokens else "stop")
        if not seq.done.done():
            seq.done.set_result(completion)
