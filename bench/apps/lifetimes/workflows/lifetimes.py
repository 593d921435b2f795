"""The nodes of the lifetimes benchmark's graphs (bench/lifetimes.py, graphs/*.yaml): light
Tasks and Plans that only pass small dicts on, so that what is measured is the stack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nalar.agentgraph import PlanResult, TaskResult, plan, task


# -- approval: prepare -> review -> approve (a person) -> conclude -> apply -> FINAL ---------
@task
def prepare(input: Any) -> dict[str, Any]:
    return {"item": input, "prepared": True}


@plan
def review(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["approve"], output={"ask": results["prepare"]})


@plan
def conclude(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["apply"], output=results["approve"]["answer"])


@task
def apply(input: Any) -> TaskResult:
    return TaskResult(output={"applied": input}, final=True)


# -- cycles: work -> decide -> work ... until `rounds` (the input) works ran -----------------
@task
def work(input: Any) -> dict[str, Any]:
    state = dict(input or {})
    state["done"] = int(state.get("done", 0)) + 1
    return state


@plan
def decide(results: Mapping[str, Any]) -> PlanResult:
    state = results["work"]
    if state["done"] >= int(state.get("rounds", 5)):
        return PlanResult(final=True, output=state)
    return PlanResult(next_tasks=["work"], output=state)
