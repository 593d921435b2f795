"""Router (paper §6, Fig. 9b): a fast classifier sends each query to the chat pool or the
coding pool. Each pool's instances have their own engine, which fails requests past its KV
budget."""

from __future__ import annotations

import asyncio

import nalar
import simwork as w


@nalar.agent(concurrency=64)
class RouterClassifier:
    async def classify(self, query_id: str, kind: str) -> str:
        await asyncio.sleep(w.classify_s(query_id))
        return kind if kind in w.ROUTER_BRANCHES else "chat"


@nalar.agent(concurrency=8, min_instances=1)
class RouterChat:
    async def reply(self, query_id: str) -> int:
        c = await nalar.llm.agenerate(w.router_prompt("chat", query_id),
                                      max_tokens=w.ROUTER_MAX_TOKENS)
        return c.completion_tokens


@nalar.agent(concurrency=8, min_instances=1)
class RouterCoder:
    async def code(self, query_id: str) -> int:
        c = await nalar.llm.agenerate(w.router_prompt("code", query_id),
                                      max_tokens=w.ROUTER_MAX_TOKENS)
        return c.completion_tokens
