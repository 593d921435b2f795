"""The nodes of graph `bulky`: a Task whose result is too large for a message, a Plan whose
output is too large to record inline, and a Task that ends the lifetime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nalar.agentgraph import PlanResult, TaskResult


def fetch(input: Any) -> TaskResult:
    mib = float((input or {}).get("mib", 2))
    return TaskResult(output={"text": "z" * int(mib * (1 << 20))})


def route(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["summarize"], output=results["fetch"]["text"][:100_000])


def summarize(input: Any) -> TaskResult:
    return TaskResult(output={"chars": len(input)}, final=True)
