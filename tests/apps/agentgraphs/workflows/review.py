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


# -- durable: a lifetime whose host dies while a Task waits on a gate file -------------------
def _log(line: str) -> None:
    import os
    from pathlib import Path

    with open(Path(os.environ.get("TOOLUSE_DIR", "/tmp")) / "executions.log", "a") as f:
        f.write(line + "\n")


@task
def first(input: Any) -> str:
    _log("first")
    return "one"


@plan
def then(results: Mapping[str, Any]) -> PlanResult:
    (name,) = results
    return PlanResult(next_tasks=["wait_for_gate" if name == "first" else "last"],
                      output=results[name])


@task
def wait_for_gate(input: Any) -> str:
    import os
    import time
    from pathlib import Path

    _log("wait_for_gate G")
    gate = Path(os.environ.get("TOOLUSE_DIR", "/tmp")) / "G.open"
    while not gate.exists():  # the workload: a long Task
        time.sleep(0.02)
    return "opened"


@plan
def after_gate(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["last"], output=results["wait_for_gate"])


@task
def last(input: Any) -> TaskResult:
    _log("last")
    return TaskResult(output="finished", final=True)


durable = workflow(build_graph(
    "durable", "1.0.0", start="first",
    nodes=[Node("first", "task", first), Node("then", "plan", then),
           Node("wait_for_gate", "task", wait_for_gate), Node("after_gate", "plan", after_gate),
           Node("last", "task", last)],
    edges=[Edge("first", "then"), Edge("then", "wait_for_gate"),
           Edge("wait_for_gate", "after_gate"), Edge("after_gate", "last"),
           Edge("last", END, F)]))
