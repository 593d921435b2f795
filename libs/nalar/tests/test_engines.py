"""The simulated engine's serving behaviour, and the OpenAI-compatible client's protocol."""

from __future__ import annotations

import asyncio
import json
import statistics

import httpx
import pytest
from nalar.engines import (
    EngineOverloaded,
    EngineUnavailable,
    LLMRequest,
    PromptTooLong,
    SimulatedEngine,
)
from nalar.engines.openai import OpenAIEngine


def _req(prompt: str, session: str | None = None, max_tokens: int = 64) -> LLMRequest:
    return LLMRequest(prompt=prompt, session=session, max_tokens=max_tokens)


async def test_same_prompt_same_answer_and_tokens_stream() -> None:
    e1, e2 = SimulatedEngine(time_scale=0.0), SimulatedEngine(time_scale=0.0)
    pieces: list[str] = []
    a = await e1.complete(_req("hello world"), pieces.append)
    b = await e2.complete(_req("hello world"))
    assert a.text == b.text and "".join(pieces) == a.text
    assert a.prompt_tokens == 2 and a.completion_tokens == len(a.text.split()) <= 64


async def test_time_per_token_grows_with_the_batch() -> None:
    async def per_token(batch: int) -> float:
        e = SimulatedEngine(time_scale=0.5, output_median_tokens=20, output_sigma=0.0)
        done = await asyncio.gather(*[e.complete(_req(f"p{i}", max_tokens=20))
                                      for i in range(batch)])
        return statistics.median((c.timings["total_s"] - c.timings["ttft_s"])
                                 / max(1, c.completion_tokens - 1) for c in done)

    one, many = await per_token(1), await per_token(48)
    assert many > one * 1.5  # 0.012 + 0.00025 * 48 vs 0.012 + 0.00025


async def test_prefix_cache_per_session_with_lru_eviction() -> None:
    e = SimulatedEngine(time_scale=0.0, cache_capacity_tokens=300)
    long = "word " * 200
    first = await e.complete(_req(long, session="a"))
    again = await e.complete(_req(long + " more", session="a"))
    assert first.cached_tokens == 0 and again.cached_tokens > 150
    moved = SimulatedEngine(time_scale=0.0)  # another replica: no cache for the session
    assert (await moved.complete(_req(long, session="a"))).cached_tokens == 0
    await e.complete(_req(long, session="b"))  # evicts a (capacity 300 tokens)
    assert not e.holds_session("a") and e.holds_session("b")


async def test_prefill_pays_only_for_uncached_tokens() -> None:
    e = SimulatedEngine(time_scale=0.05, prefill_tokens_per_s=2000)
    prompt = "token " * 1000
    cold = await e.complete(_req(prompt, session="s", max_tokens=2))
    warm = await e.complete(_req(prompt, session="s", max_tokens=2))
    assert warm.timings["ttft_s"] < cold.timings["ttft_s"] / 2


async def test_heavy_tailed_output_lengths() -> None:
    e = SimulatedEngine(time_scale=0.0)
    lengths = sorted([(await e.complete(_req(f"q{i}", max_tokens=4096))).completion_tokens
                      for i in range(300)])
    assert lengths[int(0.99 * len(lengths))] > 3 * lengths[len(lengths) // 2]


async def test_overload_and_context_limits() -> None:
    e = SimulatedEngine(time_scale=0.5, kv_budget_tokens=300, overload="fail",
                        output_median_tokens=100, output_sigma=0.0)
    running = asyncio.ensure_future(e.complete(_req("a " * 150, max_tokens=100)))
    await asyncio.sleep(0.01)
    with pytest.raises(EngineOverloaded):
        await e.complete(_req("b " * 150, max_tokens=100))
    running.cancel()
    with pytest.raises(PromptTooLong) as info:
        await SimulatedEngine(max_model_len=10).complete(_req("x " * 11))
    assert info.value.details["limit"] == 10


def _sse(chunks: list[dict[str, object]]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + \
        b"data: [DONE]\n\n"


async def test_openai_client_streams_and_counts_usage() -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        return httpx.Response(200, content=_sse([
            {"model": "m", "choices": [{"delta": {"content": "Par"}}]},
            {"model": "m", "choices": [{"delta": {"content": "is"}}]},
            {"model": "m", "choices": [], "usage": {
                "prompt_tokens": 12, "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 8}}}]))

    eng = OpenAIEngine(["http://e1/v1", "http://e2/v1"], model="m",
                       client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    pieces: list[str] = []
    c = await eng.complete(LLMRequest(messages=[{"role": "user", "content": "Capital?"}],
                                      session="s1", max_tokens=5), pieces.append)
    assert (c.text, c.prompt_tokens, c.completion_tokens, c.cached_tokens) == (
        "Paris", 12, 2, 8)
    assert pieces == ["Par", "is"] and seen[0]["user"] == "s1"
    assert seen[0]["stream_options"] == {"include_usage": True}
    assert eng.replica("s1") == eng.replica("s1")  # a session keeps its replica


async def test_openai_client_errors_are_typed() -> None:
    def too_long(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": "This model's maximum context length is "
                                                    "2048 tokens. However, you requested 3000"})

    def down(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(PromptTooLong) as info:
        await OpenAIEngine(["http://e/v1"], client=httpx.AsyncClient(
            transport=httpx.MockTransport(too_long))).complete(LLMRequest(prompt="x"))
    assert info.value.details["limit"] == 2048
    with pytest.raises(EngineUnavailable):
        await OpenAIEngine(["http://e/v1"], client=httpx.AsyncClient(
            transport=httpx.MockTransport(down))).complete(LLMRequest(prompt="x"))


async def test_moved_session_pays_a_transfer_instead_of_a_prefill() -> None:
    prompt = "token " * 2000
    recompute = SimulatedEngine(time_scale=0.05, prefill_tokens_per_s=2000)
    transfer = SimulatedEngine(time_scale=0.05, prefill_tokens_per_s=2000,
                               cache_transfer_tokens_per_s=40_000)
    slow = await recompute.complete(_req(prompt, session="moved", max_tokens=2))
    fast = await transfer.complete(_req(prompt, session="moved", max_tokens=2))
    assert fast.cached_tokens > 1900 and slow.cached_tokens == 0
    assert fast.timings["ttft_s"] < slow.timings["ttft_s"] / 4


async def test_openai_client_does_not_retry_on_its_own() -> None:
    """One request per failed LLM call: the call's retry policy decides, never a second
    layer of retries inside the client."""
    seen: list[int] = []

    def unavailable(_: httpx.Request) -> httpx.Response:
        seen.append(1)
        return httpx.Response(503, json={"message": "busy"})

    engine = OpenAIEngine(["http://e/v1"], client=httpx.AsyncClient(
        transport=httpx.MockTransport(unavailable)))
    with pytest.raises(EngineUnavailable) as info:
        await engine.complete(LLMRequest(prompt="x"))
    assert info.value.retryable and len(seen) == 1


async def test_busy_time_and_sequence_seconds() -> None:
    """Busy time counts the wall time with work admitted; sequence-seconds count each running
    sequence, so three at once add up to about three times the busy time."""
    engine = SimulatedEngine(time_scale=0.01)
    await asyncio.gather(*(engine.complete(LLMRequest(prompt=f"q {i}", max_tokens=40))
                           for i in range(3)))
    idle = engine.stats()
    assert idle["running"] == 0 and 0 < idle["busy_s"] < idle["seq_s"] <= 3 * idle["busy_s"] + 1e-3
    await asyncio.sleep(0.05)
    assert engine.stats()["busy_s"] == idle["busy_s"]  # idle time is not busy time
