"""Load-time checks of an agent graph: every problem is found (not only the first), each names
the node or edge at fault, and all of them come back in one `GraphInvalid` (an
`InvalidInput`: a 422 over HTTP) with `details.problems`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nalar_common.errors import InvalidInput

from nalar.agentgraph.model import (
    END,
    NODE_NAME,
    SEMVER,
    AgentGraph,
    Edge,
    EdgeKind,
    Node,
    kind_of,
)
from nalar.registry import agent_name


class GraphInvalid(InvalidInput):
    """An agent graph that cannot run: `details.problems` lists each problem with the node
    or edge it is about."""


def build_graph(name: str, version: str, *, start: str, nodes: Sequence[Node],
                edges: Sequence[Edge], description: str = "") -> AgentGraph:
    """A checked, immutable graph (`GraphInvalid` listing every problem otherwise)."""
    check(name, version, start, nodes, edges)
    return AgentGraph(name, version, start, {n.name: n for n in nodes}, tuple(edges),
                      description)


def check(name: str, version: str, start: str, nodes: Sequence[Node],
          edges: Sequence[Edge]) -> None:
    problems: list[dict[str, Any]] = []

    def bad(message: str, **where: Any) -> None:
        problems.append({"message": message, **{k: str(v) for k, v in where.items()}})

    try:
        agent_name(name)
    except ValueError as exc:
        bad(str(exc))
    if not isinstance(version, str) or not SEMVER.fullmatch(version):
        bad(f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    by_name = _nodes(nodes, bad)
    if start not in by_name:
        bad(f"the start node {start!r} is not a node of the graph", node=start)
    _edges(by_name, edges, bad)
    if start in by_name and not any(p.get("edge") for p in problems):
        _paths(by_name, start, edges, bad)
    if problems:
        raise GraphInvalid(f"agent graph {name!r} {version}: " + "; ".join(
            p["message"] for p in problems), details={"graph": name, "version": version,
                                                     "problems": problems})


def _nodes(nodes: Sequence[Node], bad: Any) -> dict[str, Node]:
    by_name: dict[str, Node] = {}
    for n in nodes:
        if not isinstance(n.name, str) or not NODE_NAME.fullmatch(n.name) or n.name == END:
            bad(f"node name {n.name!r} must be 1-64 of [A-Za-z0-9_], starting with a letter "
                f"(and not {END})", node=n.name)
            continue
        if n.name in by_name:
            bad(f"two nodes are named {n.name!r}", node=n.name)
            continue
        by_name[n.name] = n
        if n.kind not in ("task", "plan"):
            bad(f"node {n.name}: kind {n.kind!r} must be task or plan", node=n.name)
        found = kind_of(n.impl)
        if found is not None and found != n.kind:
            bad(f"node {n.name} is a {n.kind} but its implementation {n.impl!r} is a {found}",
                node=n.name)
        elif found is None and not callable(n.impl):
            bad(f"node {n.name}: its implementation {n.impl!r} is not a Task, a Plan or a "
                "function", node=n.name)
        if n.max_iterations is not None and (not isinstance(n.max_iterations, int) or
                                             n.max_iterations < 1):
            bad(f"node {n.name}: max_iterations must be a positive integer, not "
                f"{n.max_iterations!r}", node=n.name)
    return by_name


def _edges(by_name: dict[str, Node], edges: Sequence[Edge], bad: Any) -> None:
    seen: set[tuple[str, str]] = set()
    for e in edges:
        src, dst = by_name.get(e.source), by_name.get(e.target)
        if src is None:
            bad(f"edge {e}: no node {e.source!r}", edge=e)
            continue
        if (e.kind is EdgeKind.FINAL) != (e.target == END):
            bad(f"edge {e}: a FINAL edge, and only a FINAL edge, goes to {END}", edge=e)
            continue
        if e.kind is not EdgeKind.FINAL and dst is None:
            bad(f"edge {e}: no node {e.target!r}", edge=e)
            continue
        if (e.source, e.target) in seen:
            bad(f"edge {e}: {e.source} -> {e.target} twice", edge=e)
        seen.add((e.source, e.target))
        if dst is not None and src.kind == dst.kind:
            bad(f"edge {e}: a {src.kind} must lead to a "
                f"{'plan' if src.kind == 'task' else 'task'} (tasks and plans alternate)",
                edge=e)
        if e.kind is EdgeKind.PARALLEL and src.kind != "plan":
            bad(f"edge {e}: only a plan fans out (PARALLEL)", edge=e)
        if e.kind is EdgeKind.JOIN and (src.kind != "task" or (dst and dst.kind != "plan")):
            bad(f"edge {e}: a JOIN goes from a task into a plan", edge=e)
    for n in by_name.values():
        out = [e for e in edges if e.source == n.name]
        onward = [e for e in out if e.kind is not EdgeKind.FINAL]
        if not out:
            bad(f"node {n.name} has no edge out: a lifetime that reaches it cannot go on",
                node=n.name)
        if n.kind == "task" and len(onward) > 1:
            bad(f"task {n.name} leads to {len(onward)} plans: a task hands its result to one "
                "plan (a plan chooses)", node=n.name)
        fans = [e for e in out if e.kind is EdgeKind.PARALLEL]
        if len(fans) == 1:
            bad(f"plan {n.name} has one PARALLEL edge: a fan-out needs two or more",
                node=n.name)
        joins = [e for e in edges if e.target == n.name and e.kind is EdgeKind.JOIN]
        if len(joins) == 1:
            bad(f"plan {n.name} joins one branch: a JOIN needs two or more", node=n.name)


def _paths(by_name: dict[str, Node], start: str, edges: Sequence[Edge], bad: Any) -> None:
    """Every node is reachable from the start, and from every node a path reaches a FINAL
    edge or a node with an iteration cap (a guardrail that stops a cycle)."""
    succ: dict[str, set[str]] = {n: set() for n in by_name}
    pred: dict[str, set[str]] = {n: set() for n in by_name}
    for e in edges:
        if e.target != END:
            succ[e.source].add(e.target)
            pred[e.target].add(e.source)
    reached = _closure({start}, succ)
    for n in by_name:
        if n not in reached:
            bad(f"node {n} cannot be reached from the start node {start}", node=n)
    stops = {e.source for e in edges if e.kind is EdgeKind.FINAL} | {
        n.name for n in by_name.values() if n.max_iterations is not None}
    ends = _closure(stops, pred)
    for n in sorted(reached - ends):
        bad(f"no path from node {n} reaches a FINAL edge or a node with max_iterations: a "
            "lifetime there would never end", node=n)


def _closure(seeds: set[str], step: dict[str, set[str]]) -> set[str]:
    seen, todo = set(seeds), list(seeds)
    while todo:
        for nxt in step.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
