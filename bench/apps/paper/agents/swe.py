"""Recursive software engineering (paper §6, Fig. 9c; MetaGPT-like): a planner splits an
item into developer subtasks (each reads documentation first), a tester runs the tests;
failed work goes back to the planner. One engine pool per agent type."""

from __future__ import annotations

import asyncio

import nalar
import simwork as w


@nalar.agent(concurrency=4, min_instances=1)
class SWEPlanner:
    async def plan(self, item: str, depth: int) -> int:
        c = await nalar.llm.agenerate(w.swe_prompt("planner", item, depth),
                                      max_tokens=w.SWE_MAX_TOKENS)
        return c.completion_tokens


@nalar.agent(concurrency=4, min_instances=1)
class SWEDeveloper:
    async def develop(self, item: str, depth: int, part: int) -> int:
        await asyncio.sleep(w.swe_doc_s(item, depth, part))
        c = await nalar.llm.agenerate(w.swe_prompt("developer", item, depth, part),
                                      max_tokens=w.SWE_MAX_TOKENS)
        return c.completion_tokens


@nalar.agent(concurrency=4, min_instances=1)
class SWETester:
    async def test(self, item: str, depth: int) -> bool:
        await nalar.llm.agenerate(w.swe_prompt("tester", item, depth),
                                  max_tokens=w.SWE_MAX_TOKENS)
        await asyncio.sleep(w.tool_delay_s("tests", item, depth))
        return not w.swe_test_fails(item, depth)
