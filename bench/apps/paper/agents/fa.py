"""Financial analyst (paper §6, Fig. 9a): an analyst plans, four specialists answer in
parallel (research and news search the web first), a summarizer joins them. Every agent of
a host shares its engine, where the session's context stays cached between turns."""

from __future__ import annotations

import asyncio

import nalar
import simwork as w


async def _answer(role: str, ticker: str, question: str, turn: int) -> dict[str, object]:
    session = nalar.current_session_id() or ""
    delay = w.fa_tool_s(role, session, turn)
    if delay:
        await asyncio.sleep(delay)
    c = await nalar.llm.agenerate(w.fa_prompt(role, session, ticker, question, turn),
                                  max_tokens=w.fa_max_tokens(session))
    return {"role": role, "tokens": c.completion_tokens, "cached": c.cached_tokens}


@nalar.agent(concurrency=w.FA_ROLE_CONCURRENCY)
class FAAnalyst:
    async def plan(self, ticker: str, question: str, turn: int) -> dict[str, object]:
        return await _answer("analyst", ticker, question, turn)


@nalar.agent(concurrency=w.FA_ROLE_CONCURRENCY)
class FAStock:
    async def answer(self, ticker: str, question: str, turn: int) -> dict[str, object]:
        return await _answer("stock", ticker, question, turn)


@nalar.agent(concurrency=w.FA_ROLE_CONCURRENCY)
class FABond:
    async def answer(self, ticker: str, question: str, turn: int) -> dict[str, object]:
        return await _answer("bond", ticker, question, turn)


@nalar.agent(concurrency=w.FA_ROLE_CONCURRENCY)
class FAResearch:
    async def answer(self, ticker: str, question: str, turn: int) -> dict[str, object]:
        return await _answer("research", ticker, question, turn)


@nalar.agent(concurrency=w.FA_ROLE_CONCURRENCY)
class FANews:
    async def answer(self, ticker: str, question: str, turn: int) -> dict[str, object]:
        return await _answer("news", ticker, question, turn)


@nalar.agent(concurrency=w.FA_ROLE_CONCURRENCY)
class FASummarizer:
    async def summarize(self, ticker: str, question: str, turn: int) -> dict[str, object]:
        return await _answer("summary", ticker, question, turn)
