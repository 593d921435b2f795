"""Agent graphs of the agentgraphs test app (tests/test_agentgraph_e2e.py): `review` defined
in Python (a refine cycle, a PARALLEL fan-out joined again, a FINAL task), and the nodes of
`pingpong` (graphs/pingpong*.yaml, two versions) whose cycle only an iteration cap stops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nalar
from nalar.agentgraph import (
    END,
    Edge,
    EdgeKind,
    Node,
    Plan,
    PlanResult,
    Task,
    TaskResult,
    build_graph,
    plan,
    task,
    workflow,
)


class Draft(Task):
    """Write (again): each round is one LLM call on the host's engine."""

    def run(self, input: Any) -> TaskResult:
        rounds = int((input or {}).get("round", 0)) + 1
        text = nalar.llm.chat([{"role": "user", "content": f"draft {input.get('topic')}"}],
                              max_tokens=8).text
        return TaskResult(output={"topic": input.get("topic"), "round": rounds, "text": text})


class Critic(Plan):
    """Ask for another round until the third, then check two ways at once."""

    def decide(self, results: Mapping[str, Any]) -> PlanResult:
        draft = results["draft"]
        if draft["round"] < 3:
            return PlanResult(next_tasks=["draft"], output=draft)
        return PlanResult(next_tasks=["check_facts", "check_style"], output=draft)


@task
async def check_facts(input: Any) -> dict[str, Any]:
    return {"facts": "ok", "round": input["round"]}


@task
def check_style(input: Any) -> dict[str, Any]:
    return {"style": "ok", "round": input["round"]}


@plan
def merge(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["publish"], output={**results["check_facts"],
                                                      **results["check_style"]})


@task
def publish(input: Any) -> TaskResult:
    return TaskResult(output={"published": True, **input}, final=True)


N, P, J, F = EdgeKind.NORMAL, EdgeKind.PARALLEL, EdgeKind.JOIN, EdgeKind.FINAL
review = workflow(build_graph(
    "review", "1.0.0", start="draft",
    nodes=[Node("draft", "task", Draft), Node("critic", "plan", Critic, max_iterations=5),
           Node("check_facts", "task", check_facts), Node("check_style", "task", check_style),
           Node("merge", "plan", merge), Node("publish", "task", publish)],
    edges=[Edge("draft", "critic"), Edge("critic", "draft"),
           Edge("critic", "check_facts", P), Edge("critic", "check_style", P),
           Edge("check_facts", "merge", J), Edge("check_style", "merge", J),
           Edge("merge", "publish"), Edge("publish", END, F)]))


# -- the nodes of graphs/pingpong*.yaml ---------------------------------------------------------
@task
def ping(input: Any) -> int:
    return int(input or 0) + 1


@plan
def pong(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["ping"], output=results["ping"])


@plan
def pong_until_three(results: Mapping[str, Any]) -> PlanResult:
    if results["ping"] >= 3:
        return PlanResult(final=True, output=f"pinged {results['ping']} times")
    return PlanResult(next_tasks=["ping"], output=results["ping"])
