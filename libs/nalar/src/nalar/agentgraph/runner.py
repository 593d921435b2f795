"""An agent graph as a Nalar workflow: one run is one **lifetime**. Its driver walks the graph
tick-tock; every Task and Plan execution is a future on the built-in `tools` agent
(`tools.<graph>__v<version>__<node>`), the nodes a Plan fans out to (PARALLEL) run at once,
a JOIN Plan waits for all its branches, a FINAL edge ends the lifetime with its output, and a
node past its `max_iterations` stops it (`GuardrailExceeded`). Each execution appends an
**execution record** to the run's journal (`execution` events: headers, policy telemetry,
result), once, also when a driver runs again after a crash (its finished executions are then
served from the futures stream, not run again).
"""

from __future__ import annotations

import inspect
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from nalar_common.envelope import ValueRef
from nalar_common.errors import GuardrailExceeded, InvalidInput, NalarError
from nalar_common.journal import Event, decode, record
from nalar_common.values import href, store_for

from nalar.agentgraph.model import SEMVER, AgentGraph, EdgeKind, Human
from nalar.agentgraph.nodes import node_function
from nalar.context import current
from nalar.loop.tools import FUNCTION_TOOLS_AGENT, TOOLS_ATTR, LoopTool
from nalar.registry import WORKFLOW_ATTR, WorkflowSpec, agent_name
from nalar.signals import signal as nalar_signal
from nalar.stub import stub
from nalar.toolspec import tool_spec

INLINE_RESULT_BYTES = 64 * 1024  # larger results are recorded by the URI of the stored value
_UNSET: Any = object()


class GraphWorkflow:
    """One graph name as a workflow, each of its versions live: a run takes the newest
    unless its input pins `version`."""

    def __init__(self, graphs: AgentGraph | Sequence[AgentGraph]) -> None:
        versions = [graphs] if isinstance(graphs, AgentGraph) else list(graphs)
        if not versions or len({g.name for g in versions}) != 1:
            raise ValueError("a graph workflow is one or more versions of one graph")
        self.name = agent_name(versions[0].name)
        self.versions = {g.version: g for g in sorted(versions, key=_semver)}
        self.latest = list(self.versions)[-1]
        self.methods: dict[tuple[str, str], str] = {}
        self.tools: dict[str, LoopTool] = {}
        for graph in self.versions.values():
            for node in graph.nodes.values():
                if isinstance(node.impl, Human):
                    continue  # the driver waits for a person: nothing runs on a host
                fn = node_function(graph.name, graph.version, node)
                self.methods[(graph.version, node.name)] = fn.__name__
                self.tools[fn.__name__] = LoopTool(tool_spec(fn), agent=FUNCTION_TOOLS_AGENT,
                                                   method=fn.__name__, fn=fn)
        setattr(self, TOOLS_ATTR, self.tools)
        setattr(self, WORKFLOW_ATTR, WorkflowSpec(
            name=self.name, fn=self._workflow, is_async=True,
            signature=inspect.signature(self._workflow),
            doc=self.versions[self.latest].description or f"agent graph {self.name}"))

    def __repr__(self) -> str:
        return f"<GraphWorkflow {self.name} versions={list(self.versions)}>"

    async def _workflow(self, input: Any = None, version: str | None = None) -> Any:
        """One lifetime of the graph: `input` goes to its start node; `version` pins one."""
        chosen = version or self.latest
        graph = self.versions.get(chosen)
        if graph is None:
            raise InvalidInput(f"graph {self.name} has no version {chosen!r}; live: "
                               f"{', '.join(self.versions)}", details={"graph": self.name})
        return await Lifetime(self, graph).run(input)


def workflow(graph: AgentGraph, *more_versions: AgentGraph) -> GraphWorkflow:
    """Register a graph (and other versions of it) as a workflow named after it: put the
    result at module level in an app's `workflows/*.py`."""
    return GraphWorkflow([graph, *more_versions])


class Lifetime:
    """The walk of one run through its graph (in the workflow's driver)."""

    def __init__(self, workflow: GraphWorkflow, graph: AgentGraph) -> None:
        self.workflow, self.graph = workflow, graph
        self.counts: Counter[str] = Counter()
        self.records = Records(graph)
        self.answers: dict[str, list[Any]] = {}  # human answers given with the input
        self.shown: dict[str, Any] = {}  # what a person's task was given (its output's input)

    async def run(self, input: Any) -> Any:
        if isinstance(input, dict) and isinstance(input.get("human_answers"), dict):
            self.answers = {str(k): list(v) if isinstance(v, list) else [v]
                            for k, v in input["human_answers"].items()}
        frontier: list[tuple[str, Any]] = [(self.graph.start, input)]
        joining: dict[str, dict[str, Any]] = {}  # a JOIN plan -> the outputs so far
        while frontier:
            started = [self._start(node, arg) for node, arg in frontier]
            frontier, ended = [], _UNSET
            for node, fut, at in started:
                result = await self._finish(node, fut, at)
                if result["final"]:
                    ended = result["output"] if ended is _UNSET else ended
                elif self.graph.nodes[node].kind == "task":
                    frontier += self._after_task(node, result["output"], joining)
                else:
                    frontier += self._after_plan(node, result)
            if ended is not _UNSET:
                return ended
        raise InvalidInput(f"graph {self.graph.name}: the lifetime stopped without a FINAL edge "
                           f"(plans still waiting to join: {sorted(joining)})")

    def _start(self, node: str, arg: Any) -> tuple[str, Any, float]:
        self.counts[node] += 1
        cap = self.graph.nodes[node].max_iterations
        if cap is not None and self.counts[node] > cap:
            raise GuardrailExceeded(
                f"node {node} of graph {self.graph.name} reached its max_iterations ({cap})",
                details={"graph": self.graph.name, "node": node, "max_iterations": cap})
        impl = self.graph.nodes[node].impl
        if isinstance(impl, Human):
            self.shown[node] = arg
            return node, self._human(node, impl), time.time()
        method = self.workflow.methods[(self.graph.version, node)]
        return node, getattr(stub(FUNCTION_TOOLS_AGENT), method)(arg=arg), time.time()

    def _human(self, node: str, impl: Human) -> Any:
        """The person's answer: given with the input, or the signal `<node>-<iteration>`."""
        given = self.answers.get(node)
        if given:
            return _Answered(given.pop(0), f"answer-{node}-{self.counts[node]}")
        return nalar_signal(f"{node}-{self.counts[node]}", timeout=impl.timeout)

    async def _finish(self, node: str, fut: Any, at: float) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await fut
            if isinstance(self.graph.nodes[node].impl, Human):
                answer = result
                result = {"output": {"input": self.shown.pop(node, None), "answer": answer},
                          "final": isinstance(answer, dict) and bool(answer.get("final")),
                          "usage": {}}
        except NalarError as exc:
            await self.records.add(self._record(node, fut.future, at, "failed", None, exc))
            raise
        await self.records.add(self._record(node, fut.future, at, "ok", result, None,
                                            getattr(fut, "reference", None)))
        return result

    def _after_task(self, node: str, output: Any,
                    joining: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
        onward = [e for e in self.graph.out(node) if e.kind is not EdgeKind.FINAL]
        if not onward:
            raise InvalidInput(f"task {node} of graph {self.graph.name} has only a FINAL edge "
                               "but did not end the lifetime (TaskResult(final=True))")
        edge = onward[0]
        if edge.kind is not EdgeKind.JOIN:
            return [(edge.target, {node: output})]
        waiting = joining.setdefault(edge.target, {})
        waiting[node] = output
        if set(waiting) >= set(self.graph.joins_into(edge.target)):
            return [(edge.target, joining.pop(edge.target))]
        return []

    def _after_plan(self, node: str, result: dict[str, Any]) -> list[tuple[str, Any]]:
        chosen = list(result["next_tasks"])
        edges = {e.target: e for e in self.graph.out(node) if e.kind is not EdgeKind.FINAL}
        wrong = [t for t in chosen if t not in edges]
        if wrong or not chosen:
            raise InvalidInput(f"plan {node} of graph {self.graph.name} chose {chosen}: it "
                               f"may choose among {sorted(edges)} (or end: final=True)",
                               details={"node": node, "chosen": chosen})
        if len(chosen) > 1 and any(edges[t].kind is not EdgeKind.PARALLEL for t in chosen):
            raise InvalidInput(f"plan {node} of graph {self.graph.name} chose {chosen} at "
                               "once: only tasks behind its PARALLEL edges run together")
        return [(t, result["output"]) for t in chosen]

    def _record(self, node: str, future: str, at: float, status: str,
                result: dict[str, Any] | None, error: NalarError | None,
                reference: ValueRef | None = None) -> dict[str, Any]:
        """An execution's record; a result over `INLINE_RESULT_BYTES` is recorded by the URI
        of its stored value (`Records.add` keeps it if the future did not)."""
        finished = time.time()
        usage = (result or {}).get("usage") or {}
        body: dict[str, Any] = {
            "headers": {"graph": self.graph.name, "version": self.graph.version, "node": node,
                        "kind": self.graph.nodes[node].kind, "iteration": self.counts[node],
                        "future": future, "status": status, "started": at,
                        "finished": finished},
            "telemetry": {"latency_ms": round((finished - at) * 1e3, 3),
                          "tokens_used": usage.get("tokens_used", 0),
                          "llm_calls": usage.get("llm_calls", 0)},
        }
        if error is not None:
            body["error"] = error.to_wire()
            return body
        value = {k: v for k, v in (result or {}).items() if k != "usage"}
        if reference is not None:
            body["result"] = {"inline": None, "size_bytes": reference.size,
                              "uri": reference.uri}
            return body
        size = len(json.dumps(value, default=str).encode())
        body["result"] = {"inline": value, "size_bytes": size} if size <= INLINE_RESULT_BYTES \
            else {"inline": None, "size_bytes": size, "keep": value}
        return body


class _Answered:
    """A human answer given with the lifetime's input (awaitable like a signal's future)."""

    def __init__(self, value: Any, future: str) -> None:
        self.value, self.future = value, future

    def __await__(self) -> Any:
        if False:  # pragma: no cover - makes this a generator
            yield
        return self.value


class Records:
    """The run's execution records, each appended once: a driver that runs again reads which
    executions are recorded already (a restart can come after NATS's duplicate window)."""

    def __init__(self, graph: AgentGraph) -> None:
        self.graph = graph
        self.seen: set[str] | None = None

    async def add(self, body: dict[str, Any]) -> None:
        ctx = current()
        bus = getattr(ctx.runtime, "bus", None)
        if bus is None:  # local mode: no journal
            return
        if self.seen is None:
            names = bus.names
            self.seen = {str((decode(m).get("headers") or {}).get("future"))
                         for m in await bus.read_all(names.runs_stream,
                                                     names.run_event(ctx.run, Event.EXECUTION))}
        future = str(body["headers"]["future"])
        if future in self.seen:
            return
        result = body.get("result") or {}
        if "keep" in result:  # too large to record inline: recorded by its URI
            ref = await store_for(bus).put(ctx.run, future, "record", result.pop("keep"))
            result["uri"] = ref.uri
        if "result" in body:
            result["href"] = href(ctx.run, future)
        self.seen.add(future)
        await record(bus, ctx.run, Event.EXECUTION, body, acked=True,
                     msg_id=f"{ctx.run}.execution.{future}")


def _semver(graph: AgentGraph) -> tuple[int, int, int, str]:
    m = SEMVER.fullmatch(graph.version)
    assert m is not None
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), graph.version
