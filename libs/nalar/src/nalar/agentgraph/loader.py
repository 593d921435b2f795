"""Agent graphs defined in YAML (an app's `graphs/*.yaml`):

    name: support
    version: 1.2.0
    start: read_ticket
    nodes:
      read_ticket: {task: "graphs_impl.support:ReadTicket"}
      route:       {plan: "graphs_impl.support:Route", max_iterations: 5}
      answer:      {task: "graphs_impl.support:answer"}
    edges:
      - [read_ticket, route]                      # NORMAL
      - {from: route, to: answer}
      - {from: answer, to: END, kind: FINAL}

Implementations are `module:attribute` (a Task or Plan subclass, or a `@task`/`@plan`
function), imported with the app's directory on the path. Every problem is a `GraphInvalid`
naming the file and the node or edge."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from nalar.agentgraph.model import AgentGraph, Edge, EdgeKind, Human, Node
from nalar.agentgraph.validate import GraphInvalid, build_graph

TOP_KEYS = {"name", "version", "start", "nodes", "edges", "description"}


def load_graph(path: Path) -> AgentGraph:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _invalid(path, f"cannot be read as YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid(path, "must be a mapping with name, version, start, nodes, edges")
    unknown = sorted(set(doc) - TOP_KEYS)
    missing = sorted({"name", "version", "start", "nodes", "edges"} - set(doc))
    if unknown or missing:
        raise _invalid(path, (f"unknown keys {unknown}" if unknown else "") +
                       ("; " if unknown and missing else "") +
                       (f"missing keys {missing}" if missing else ""))
    nodes = [_node(path, name, spec) for name, spec in _mapping(path, doc["nodes"], "nodes")]
    edges = [_edge(path, i, e) for i, e in enumerate(_list(path, doc["edges"], "edges"))]
    try:
        return build_graph(str(doc["name"]), str(doc["version"]), start=str(doc["start"]),
                           nodes=nodes, edges=edges,
                           description=str(doc.get("description") or ""))
    except GraphInvalid as exc:
        raise GraphInvalid(f"{path}: {exc.message}",
                           details={**exc.details, "file": str(path)}) from None


def load_graphs(root: Path) -> dict[str, list[AgentGraph]]:
    """Every `graphs/*.yaml` of an app, by graph name (several versions of one name may be
    live at once; two files with the same name and version are an error)."""
    out: dict[str, list[AgentGraph]] = {}
    for path in sorted((root / "graphs").glob("*.yaml")):
        graph = load_graph(path)
        versions = out.setdefault(graph.name, [])
        if any(g.version == graph.version for g in versions):
            raise _invalid(path, f"graph {graph.name} {graph.version} is defined twice")
        versions.append(graph)
    return out


def _node(path: Path, name: Any, spec: Any) -> Node:
    kinds = {"task", "plan", "human"}
    if not isinstance(spec, dict) or len(kinds & set(spec)) != 1 or \
            not set(spec) <= kinds | {"max_iterations", "timeout"}:
        raise _invalid(path, f"node {name}: give one of task: or plan: (module:attribute) or "
                       f"human: (a prompt), and optionally max_iterations, not {spec!r}",
                       node=name)
    if "human" in spec:
        return Node(str(name), "task", Human(str(spec["human"] or ""), spec.get("timeout")),
                    spec.get("max_iterations"))
    kind = "task" if "task" in spec else "plan"
    return Node(str(name), kind, _import(path, str(name), spec[kind]),
                spec.get("max_iterations"))


def _edge(path: Path, i: int, spec: Any) -> Edge:
    if isinstance(spec, list) and len(spec) in (2, 3):
        spec = dict(zip(("from", "to", "kind"), spec, strict=False))
    if not isinstance(spec, dict) or not {"from", "to"} <= set(spec) or \
            not set(spec) <= {"from", "to", "kind"}:
        raise _invalid(path, f"edge {i + 1}: give from, to and optionally kind, not {spec!r}",
                       edge=i + 1)
    kind = str(spec.get("kind", "NORMAL")).upper()
    if kind not in EdgeKind.__members__:
        raise _invalid(path, f"edge {i + 1} ({spec['from']} -> {spec['to']}): kind {kind!r} "
                       f"is not one of {', '.join(EdgeKind.__members__)}", edge=i + 1)
    return Edge(str(spec["from"]), str(spec["to"]), EdgeKind[kind])


def _import(path: Path, node: str, ref: Any) -> Any:
    module, _, attr = str(ref).partition(":")
    if not module or not attr:
        raise _invalid(path, f"node {node}: implementation {ref!r} must be module:attribute",
                       node=node)
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise _invalid(path, f"node {node}: cannot import {ref}: {exc}", node=node) from None


def _mapping(path: Path, value: Any, what: str) -> list[tuple[Any, Any]]:
    if not isinstance(value, dict) or not value:
        raise _invalid(path, f"{what} must be a non-empty mapping")
    return list(value.items())


def _list(path: Path, value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _invalid(path, f"{what} must be a non-empty list")
    return value


def _invalid(path: Path, message: str, **where: Any) -> GraphInvalid:
    return GraphInvalid(f"{path}: {message}", details={
        "file": str(path), "problems": [{"message": message,
                                         **{k: str(v) for k, v in where.items()}}]})
