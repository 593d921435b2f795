"""The drivers of the paper's three workloads (bench/paper.py posts them over HTTP)."""

from __future__ import annotations

import asyncio

import nalar
import simwork as w
from agents.fa import FAAnalyst, FABond, FANews, FAResearch, FAStock, FASummarizer
from agents.router import RouterChat, RouterClassifier, RouterCoder
from agents.swe import SWEDeveloper, SWEPlanner, SWETester


@nalar.workflow
async def fa_query(ticker: str, question: str, turn: int = 0) -> dict[str, object]:
    """One turn of an analyst session (the session id comes with the run)."""
    await nalar.stub(FAAnalyst).plan(ticker, question, turn)
    parts = await asyncio.gather(*(nalar.stub(cls).answer(ticker, question, turn)
                                   for cls in (FAStock, FABond, FAResearch, FANews)))
    summary = await nalar.stub(FASummarizer).summarize(ticker, question, turn)
    return {"summary": summary, "tokens": sum(int(p["tokens"]) for p in parts)}


@nalar.workflow
async def route_query(query_id: str, kind: str) -> dict[str, object]:
    branch = await nalar.stub(RouterClassifier).classify(query_id, kind)
    if branch == "code":
        tokens = await nalar.stub(RouterCoder).code(query_id)
    else:
        tokens = await nalar.stub(RouterChat).reply(query_id)
    return {"branch": branch, "tokens": tokens}


@nalar.workflow
async def swe_item(item: str) -> dict[str, object]:
    """Plan, develop in parallel, test; failed work re-enters at the planner."""
    depth = 0
    while True:
        await nalar.stub(SWEPlanner).plan(item, depth)
        await asyncio.gather(*(nalar.stub(SWEDeveloper).develop(item, depth, part)
                               for part in range(w.SWE_SUBTASKS)))
        if await nalar.stub(SWETester).test(item, depth):
            return {"item": item, "attempts": depth + 1}
        depth += 1
