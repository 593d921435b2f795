"""Agent graphs (issue 21): directed, possibly cyclic graphs of work in which **Task** nodes do
the work (an API call, a query, an LLM call, a tool) and **Plan** nodes decide what runs next,
alternating Task → Plan → Task (tick-tock) until a FINAL edge ends the lifetime or a
guardrail stops it.

    class Search(nalar.Task):
        def run(self, input): return TaskResult(output=search(input["query"]))

    class Decide(nalar.Plan):
        def decide(self, results): return PlanResult(next_tasks=["answer"])

An `AgentGraph` is an immutable template with a semantic version; `build_graph` checks it
(`nalar.agentgraph.validate`) and every error names the node or edge at fault.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

END = "END"  # the target of a FINAL edge: the lifetime ends
NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?")


class EdgeKind(enum.Enum):
    NORMAL = "NORMAL"  # one step to the next node
    PARALLEL = "PARALLEL"  # a Plan's fan-out: its Tasks run at once
    JOIN = "JOIN"  # into a Plan that waits for every branch joined into it
    FINAL = "FINAL"  # ends the lifetime (target END)


@dataclass(frozen=True)
class TaskResult:
    """What a Task returns: its output (the next Plan's input) and whether it takes its
    FINAL edge (the lifetime ends with this output)."""

    output: Any = None
    final: bool = False


@dataclass(frozen=True)
class PlanResult:
    """What a Plan returns: the Tasks to run next (among its edges' targets; several at once
    over PARALLEL edges), what they get as input, or `final` to take its FINAL edge."""

    next_tasks: tuple[str, ...] = ()
    output: Any = None
    final: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "next_tasks", tuple(self.next_tasks))


class Task:
    """A node that does work: subclass it and implement `run(input) -> TaskResult` (sync or
    async); `input` is what the Plan before it decided (its `PlanResult.output`)."""

    def run(self, input: Any) -> TaskResult:
        raise NotImplementedError


class Plan:
    """A node that decides: subclass it and implement `decide(results) -> PlanResult` (sync or
    async); `results` maps each Task that led here to its output (several after a JOIN)."""

    def decide(self, results: Mapping[str, Any]) -> PlanResult:
        raise NotImplementedError


@dataclass(frozen=True)
class Human:
    """A Task a person does (human in the loop): the lifetime waits for the run's signal
    `<node>-<iteration>` (`POST /v1/runs/{id}/signals/<node>-<n>` with `{"value": ...}`),
    holding no worker, however long; the task's output is `{"input": what it was given,
    "answer": the value}`, and `{"final": true}` in the answer takes its FINAL edge. A
    lifetime's input may answer ahead of time: `{"human_answers": {"<node>": [value, ...]},
    ...}` (local mode has no signals)."""

    prompt: str = ""
    timeout: float | None = None  # seconds; then the lifetime fails with `Timeout`


@dataclass(frozen=True)
class Node:
    name: str
    kind: str  # "task" or "plan"
    impl: Callable[..., Any] | type | Human  # a Task/Plan subclass, a function, a person
    max_iterations: int | None = None  # executions per lifetime: the cap on a cycle


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # END for a FINAL edge
    kind: EdgeKind = EdgeKind.NORMAL

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.kind.value})"


@dataclass(frozen=True)
class AgentGraph:
    """An immutable graph template: built and checked with `build_graph`."""

    name: str
    version: str
    start: str
    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    description: str = ""
    _out: Mapping[str, tuple[Edge, ...]] = field(default_factory=dict, repr=False,
                                                 compare=False)

    def __post_init__(self) -> None:
        out: dict[str, list[Edge]] = {}
        for e in self.edges:
            out.setdefault(e.source, []).append(e)
        object.__setattr__(self, "_out", {k: tuple(v) for k, v in out.items()})

    def out(self, node: str) -> tuple[Edge, ...]:
        """The edges leaving `node`."""
        return self._out.get(node, ())

    def joins_into(self, plan: str) -> tuple[str, ...]:
        """The Tasks a JOIN Plan waits for."""
        return tuple(e.source for e in self.edges if e.target == plan and
                     e.kind is EdgeKind.JOIN)


def task(fn: Callable[..., Any] | None = None, /, *,
         max_iterations: int | None = None) -> Any:
    """Mark a function `(input) -> TaskResult | value` as a Task (a plain value is its
    output)."""
    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__nalar_node__ = ("task", max_iterations)  # type: ignore[attr-defined]
        return f
    return wrap(fn) if fn is not None else wrap


def plan(fn: Callable[..., Any] | None = None, /, *,
         max_iterations: int | None = None) -> Any:
    """Mark a function `(results) -> PlanResult | [task names]` as a Plan."""
    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__nalar_node__ = ("plan", max_iterations)  # type: ignore[attr-defined]
        return f
    return wrap(fn) if fn is not None else wrap


def kind_of(impl: Any) -> str | None:
    """"task" or "plan" for a Task/Plan subclass, a decorated function or a `Human`; None
    otherwise."""
    if isinstance(impl, Human):
        return "task"
    if isinstance(impl, type):
        return "task" if issubclass(impl, Task) else "plan" if issubclass(impl, Plan) else None
    marked = getattr(impl, "__nalar_node__", None)
    return marked[0] if isinstance(marked, tuple) else None
