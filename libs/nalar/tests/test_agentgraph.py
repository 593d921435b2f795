"""Agent graphs as templates: building one, the load-time check of every malformed kind (each
error naming the node or edge), and YAML definitions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from nalar.agentgraph import (
    END,
    AgentGraph,
    Edge,
    EdgeKind,
    GraphInvalid,
    Node,
    Plan,
    PlanResult,
    Task,
    TaskResult,
    build_graph,
    load_graph,
    load_graphs,
    plan,
    task,
)


class Ask(Task):
    def run(self, input: Any) -> TaskResult:
        return TaskResult(output=input)


class Route(Plan):
    def decide(self, results: Mapping[str, Any]) -> PlanResult:
        return PlanResult(next_tasks=["answer"])


@task
def answer(input: Any) -> str:
    return "done"


@plan(max_iterations=3)
def retry(results: Mapping[str, Any]) -> list[str]:
    return ["ask"]


N, P, J, F = EdgeKind.NORMAL, EdgeKind.PARALLEL, EdgeKind.JOIN, EdgeKind.FINAL


def build(nodes: list[Node], edges: list[tuple[str, str, EdgeKind]], *, start: str = "ask",
          version: str = "1.0.0", name: str = "g") -> AgentGraph:
    return build_graph(name, version, start=start, nodes=nodes,
                       edges=[Edge(a, b, k) for a, b, k in edges])


NODES = [Node("ask", "task", Ask), Node("route", "plan", Route), Node("answer", "task", answer)]
EDGES = [("ask", "route", N), ("route", "answer", N), ("answer", END, F)]


def test_a_tick_tock_graph_builds() -> None:
    g = build(NODES, EDGES)
    assert g.start == "ask" and set(g.nodes) == {"ask", "route", "answer"}
    assert [str(e) for e in g.out("route")] == ["route -> answer (NORMAL)"]


def test_the_coding_agent_shape_builds() -> None:
    """Fan out to parallel branches, each with its own validation loop, joined again."""
    nodes = [Node("human", "task", Ask), Node("refine", "plan", Route),
             Node("tool_a", "task", Ask), Node("tool_b", "task", Ask),
             Node("check", "plan", Route, max_iterations=5), Node("accept", "task", answer)]
    edges = [("human", "refine", N), ("refine", "human", N), ("refine", "tool_a", P),
             ("refine", "tool_b", P), ("tool_a", "check", J), ("tool_b", "check", J),
             ("check", "tool_a", N), ("check", "accept", N), ("accept", "refine", N),
             ("accept", END, F)]
    g = build(nodes, edges, start="human")
    assert g.joins_into("check") == ("tool_a", "tool_b")


@pytest.mark.parametrize(("nodes", "edges", "kw", "says", "where"), [
    (NODES, EDGES, {"version": "1.0"}, "not a semantic version", None),
    (NODES, EDGES, {"name": "_g"}, "agent name '_g'", None),
    (NODES, EDGES, {"start": "nowhere"}, "start node 'nowhere' is not a node", "nowhere"),
    ([*NODES, Node("ask", "task", Ask)], EDGES, {}, "two nodes are named 'ask'", "ask"),
    ([Node("bad name", "task", Ask), *NODES], EDGES, {}, "node name 'bad name'", "bad name"),
    ([Node("ask", "task", Route), *NODES[1:]], EDGES, {}, "implementation", "ask"),
    ([Node("ask", "thing", Ask), *NODES[1:]], EDGES, {}, "kind 'thing'", "ask"),
    ([*NODES[:2], Node("answer", "task", answer, max_iterations=0)], EDGES, {},
     "max_iterations must be a positive integer", "answer"),
    (NODES, [*EDGES, ("route", "ghost", N)], {}, "no node 'ghost'", "route -> ghost"),
    (NODES, [("ask", "answer", N), ("route", "answer", N), ("answer", END, F)], {},
     "a task must lead to a plan", "ask -> answer"),
    (NODES, [*EDGES[:2], ("answer", "route", F)], {}, "only a FINAL edge, goes to END",
     "answer -> route"),
    (NODES, [*EDGES, ("route", "answer", N)], {}, "route -> answer twice", "route -> answer"),
    (NODES, [("ask", "route", N), ("route", "answer", P), ("answer", END, F)], {},
     "one PARALLEL edge", "route"),
    ([*NODES, Node("other", "plan", Route)], [*EDGES, ("ask", "other", N),
                                              ("other", "answer", N)], {},
     "leads to 2 plans", "ask"),
    (NODES, [("ask", "route", N), ("route", "answer", N)], {}, "has no edge out", "answer"),
    ([*NODES, Node("lost", "task", Ask)], [*EDGES, ("lost", "route", N)], {},
     "cannot be reached from the start", "lost"),
    ([*NODES, Node("loop", "task", Ask), Node("spin", "plan", Route)],
     [*EDGES, ("route", "loop", N), ("loop", "spin", N), ("spin", "loop", N)], {},
     "no path from node loop reaches a FINAL edge", "loop"),
])
def test_each_malformed_graph_is_refused_naming_where(nodes: list[Node], edges: list[Any],
                                                     kw: dict[str, Any], says: str,
                                                     where: str | None) -> None:
    with pytest.raises(GraphInvalid) as info:
        build(nodes, edges, **kw)
    assert says in info.value.message, info.value.message
    assert info.value.error_code == "invalid_input"
    if where is not None:
        assert any(where in (p.get("node", "") + p.get("edge", ""))
                   for p in info.value.details["problems"]), info.value.details


def test_an_iteration_cap_makes_a_cycle_acceptable() -> None:
    nodes = [*NODES, Node("loop", "task", Ask), Node("spin", "plan", retry, max_iterations=3)]
    build(nodes, [*EDGES, ("route", "loop", N), ("loop", "spin", N), ("spin", "loop", N)])


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(GraphInvalid) as info:
        build([Node("ask", "task", Ask)], [("ask", "nowhere", N)], version="x")
    messages = [p["message"] for p in info.value.details["problems"]]
    assert len(messages) == 2 and "semantic version" in messages[0] and "nowhere" in messages[1]


YAML = """
name: support
version: 1.2.0
start: ask
description: answers tickets
nodes:
  ask: {task: "gimpl:Ask"}
  route: {plan: "gimpl:Route", max_iterations: 4}
  answer: {task: "gimpl:answer"}
edges:
  - [ask, route]
  - {from: route, to: answer}
  - {from: answer, to: END, kind: final}
"""


IMPL = """
from nalar.agentgraph import Plan, PlanResult, Task, TaskResult, task

class Ask(Task):
    def run(self, input):
        return TaskResult(output=input)

class Route(Plan):
    def decide(self, results):
        return PlanResult(next_tasks=["answer"])

@task
def answer(input):
    return "done"
"""


@pytest.fixture
def impl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An app module with the implementations (apps import theirs with the app on the path)."""
    import importlib
    import sys

    (tmp_path / "gimpl.py").write_text(IMPL)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("gimpl", None)
    return importlib.import_module("gimpl")


def test_a_yaml_graph_loads(tmp_path: Path, impl: Any) -> None:
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "support.yaml").write_text(YAML)
    (tmp_path / "graphs" / "support2.yaml").write_text(YAML.replace("1.2.0", "1.3.0"))
    graphs = load_graphs(tmp_path)
    assert [g.version for g in graphs["support"]] == ["1.2.0", "1.3.0"]
    g = graphs["support"][0]
    assert g.nodes["route"].impl is impl.Route and g.nodes["route"].max_iterations == 4
    assert g.nodes["answer"].impl is impl.answer and g.description == "answers tickets"
    assert [e.kind for e in g.edges] == [N, N, F]
    (tmp_path / "graphs" / "again.yaml").write_text(YAML)
    with pytest.raises(GraphInvalid, match=r"support 1\.2\.0 is defined twice"):
        load_graphs(tmp_path)


@pytest.mark.parametrize(("text", "says"), [
    ("name: [", "cannot be read as YAML"),
    ("- a\n- b\n", "must be a mapping"),
    (YAML.replace("start: ask", "strat: ask"), "unknown keys ['strat']"),
    (YAML.replace('ask: {task: "gimpl:Ask"}', 'ask: {job: "x:y"}'),
     "node ask: give one of task: or plan:"),
    (YAML.replace("gimpl:Ask", "gimpl:Nope"), "node ask: cannot import"),
    (YAML.replace("gimpl:Ask", "nomodule"), "must be module:attribute"),
    (YAML.replace("kind: final", "kind: sideways"), "kind 'SIDEWAYS' is not one of"),
    (YAML.replace("- [ask, route]", "- [ask]"), "edge 1: give from, to"),
    (YAML.replace("version: 1.2.0", "version: one"), "not a semantic version"),
])
def test_a_bad_yaml_graph_says_what_and_where(tmp_path: Path, impl: Any, text: str,
                                              says: str) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(GraphInvalid) as info:
        load_graph(path)
    assert says in info.value.message and str(path) in info.value.message
