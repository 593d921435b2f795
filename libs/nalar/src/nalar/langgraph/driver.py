"""The graph in the workflow driver: LangGraph's own Pregel loop (channels, reducers,
conditional edges, `Send`, `Command`, super-steps), with every node replaced by a thin node
that makes the node's future (a method of the `tools` agent, on a host) and returns what it
returned. The nodes of a super-step are futures at once, so they run in parallel.

Durability is the futures stream's: a driver that runs again (its host lost, a signal
come) runs the graph from its input again, and the n-th future has the same id, so every
node that finished is served from the stream instead of running again; the graph is back
at the last finished super-step without a checkpoint of its own. LangGraph's checkpointer
here is an in-memory one made each time the driver runs (rebuilt by that replay): it gives
`interrupt()` and `Command(resume=...)` their usual meaning inside the driver, and the run's
journal has what `get_state()` would say (`graph` events, `nalar.langgraph.events`).

A node that calls `interrupt(value)` ends its future with the value; its thin node calls
LangGraph's `interrupt()` in the driver, the super-step ends, and the driver asks for the
answer by the signal `interrupt-<future>` (a `graph` event of mode `interrupt` has the
value): the run is `waiting` and holds no worker. `POST /v1/runs/{id}/signals/<name>` with
`{"value": ...}` runs the driver again, which resumes the graph with `Command(resume=...)`:
the node runs again from its start with that answer (a new future), as LangGraph runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.types import Command, interrupt
from nalar_common.errors import InvalidInput, ReplayDiverged
from pydantic import BaseModel

from nalar.context import CallContext, current
from nalar.langgraph.codec import decode_output, from_json, to_json
from nalar.langgraph.events import GraphJournal
from nalar.langgraph.nodes import state_digest
from nalar.loop.tools import FUNCTION_TOOLS_AGENT
from nalar.signals import LOOKUP_WAIT_S, signal
from nalar.stub import stub

STREAM_MODES = ["values", "updates", "checkpoints"]


@dataclass
class _Execution:
    """One execution of a graph's driver."""

    ctx: CallContext
    journal: GraphJournal
    step: int = 0  # the super-step running (LangGraph's `langgraph_step`)
    # a node's answer that was an interrupt, by (node, input, resume values): found again
    # when LangGraph runs the node again to resume it, so that it is not asked twice
    held: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # LangGraph's interrupt id -> what the run's client sees of it (its signal above all)
    interrupts: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: dict[tuple[int, str], int] = field(default_factory=dict)
    values: int = 0
    last_values: Any = None


_EXECUTION: ContextVar[_Execution | None] = ContextVar("nalar_graph_execution", default=None)


def thin_node(node: str, method: str) -> Any:
    """The node as the driver's graph runs it: its future, awaited."""

    async def run_on_a_host(state: Any) -> Any:
        ex = _EXECUTION.get()
        if ex is None:
            raise RuntimeError(f"node {node!r} of a graph registered with Nalar runs in its "
                               "workflow's driver only")
        config = get_config()
        step = int((config.get("metadata") or {}).get("langgraph_step", ex.step))
        payload = to_json(state, f"input of node {node!r}")
        model = isinstance(state, BaseModel) or (dataclasses.is_dataclass(state)
                                                 and not isinstance(state, type))
        resume: list[Any] = []
        while True:
            key = f"{node}:{state_digest(payload)}:{state_digest(resume)}"
            held = ex.held.pop(key, None)
            if held is not None:
                future, out = held
            else:
                # first thing the node does, before it awaits anything: the nodes of a
                # super-step make their futures in the order LangGraph starts them, the
                # same each time the driver runs (ids are numbered in that order)
                fut = getattr(stub(FUNCTION_TOOLS_AGENT), method)(
                    state=payload, resume=list(resume), step=step, model=model)
                future = fut.future
                await ex.journal.emit(f"task:{future}", "task", node=node, step=step,
                                      future=future)
                out = await fut
                _check(out, node, payload, future)
            if "interrupt" not in out:
                return decode_output(out)
            ex.held[key] = (future, out)
            value = out["interrupt"].get("value")
            try:
                resume.append(interrupt(value))
            except GraphInterrupt as exc:
                for intr in exc.args[0] if exc.args else ():
                    ex.interrupts[intr.id] = {"signal": f"interrupt-{future}", "node": node,
                                              "step": step, "future": future, "value": value}
                raise

    run_on_a_host.__name__ = run_on_a_host.__qualname__ = node
    return run_on_a_host


def _check(out: Any, node: str, payload: Any, future: str) -> None:
    """The result served for a future is this node's, for this input: else the driver did
    not take the path it took before (a routing function that is not deterministic)."""
    if not isinstance(out, dict) or out.get("node") != node or \
            out.get("input") != state_digest(payload):
        got = out.get("node") if isinstance(out, dict) else None
        raise ReplayDiverged(
            f"future {future} holds the result of node {got!r} for another input, not of node "
            f"{node!r}: the graph took another path when its driver ran again (are its "
            "routing functions deterministic?)",
            details={"future": future, "node": node, "served_node": got})


class GraphDriver:
    """The workflow's function: runs the driver graph to its end, or to an interrupt whose
    answer has not come (then the run waits for its signal)."""

    def __init__(self, graph: Any, *, recursion_limit: int | None,
                 interrupt_timeout: float | None) -> None:
        self.graph = graph  # compiled, with thin nodes, no checkpointer
        self.recursion_limit = recursion_limit
        self.interrupt_timeout = interrupt_timeout

    def workflow_function(self) -> Any:
        """The workflow's function: its keyword arguments are the graph's input state (any
        key, `self` included)."""

        async def run_graph(**state: Any) -> Any:
            return await self.run(state)

        return run_graph

    async def run(self, state: dict[str, Any]) -> Any:
        ctx = current()
        journal = GraphJournal(ctx)
        await journal.load()
        ex = _Execution(ctx, journal)
        token = _EXECUTION.set(ex)
        try:
            with _untraced():
                return await self._drive(ex, from_json(state))
        finally:
            _EXECUTION.reset(token)

    async def _drive(self, ex: _Execution, state: dict[str, Any]) -> Any:
        graph = self.graph.copy({"checkpointer": InMemorySaver()})
        config: dict[str, Any] = {"configurable": {"thread_id": ex.ctx.run}}
        if self.recursion_limit is not None:
            config["recursion_limit"] = self.recursion_limit
        pending: Any = state
        while True:
            resuming = isinstance(pending, Command)
            async for mode, chunk in graph.astream(pending, config, stream_mode=STREAM_MODES):
                await self._journal(ex, mode, chunk, resuming)
                if mode == "values" and not _interrupted(chunk):
                    resuming = False
            snapshot = await graph.aget_state(config)
            waiting = [i for task in snapshot.tasks for i in task.interrupts]
            if not waiting:
                return to_json(ex.last_values, "output")
            pending = Command(resume=await self._answers(ex, waiting))

    async def _answers(self, ex: _Execution, waiting: list[Any]) -> dict[str, Any]:
        """Each interrupt's answer, by its signal (declared all at once, read in the order of
        the tasks): the driver leaves here, the run `waiting`, until the first is given."""
        if getattr(ex.ctx.runtime, "signal", None) is None:
            nodes = sorted({ex.interrupts[i.id]["node"] for i in waiting})
            raise InvalidInput(f"the graph interrupted at {', '.join(nodes)}: local mode has no "
                               "signals to answer interrupt() with; run it on a stack",
                               details={"interrupts": [ex.interrupts[i.id] for i in waiting]})
        asked = [(i.id, ex.interrupts[i.id],
                  signal(ex.interrupts[i.id]["signal"], timeout=self.interrupt_timeout))
                 for i in waiting]
        for _, seen, answer in asked:
            # journaled once the signal is declared: a client that sees the question can
            # answer it at once (the gateway takes declared signals only)
            looked_up = getattr(answer, "looked_up", None)
            if looked_up is not None and not looked_up.is_set():
                await asyncio.to_thread(looked_up.wait, LOOKUP_WAIT_S)
            await ex.journal.emit(f"interrupt:{seen['signal']}", "interrupt", **seen)
        return {iid: await answer for iid, _, answer in asked}

    async def _journal(self, ex: _Execution, mode: str, chunk: Any, resuming: bool) -> None:
        j = ex.journal
        if mode == "checkpoints":
            meta = chunk.get("metadata") or {}
            saved = int(meta.get("step", ex.step - 1))
            ex.step = saved + 1  # the step its next tasks run in (their `langgraph_step`)
            await j.emit(f"checkpoint:{saved}", "checkpoint", step=saved,
                         source=meta.get("source"), next=list(chunk.get("next") or ()))
        elif mode == "updates":
            for node, update in chunk.items():
                if node.startswith("__"):  # `__interrupt__`: journaled with its signal
                    continue
                n = ex.updates.get((ex.step, node), 0)
                ex.updates[(ex.step, node)] = n + 1
                await j.emit(f"updates:{ex.step}:{node}:{n}", "updates", node=node,
                             step=ex.step, data=_jsonable(update))
        elif mode == "values" and not _interrupted(chunk):
            data = _jsonable(chunk)
            if resuming and data == _jsonable(ex.last_values):
                return  # LangGraph says the state again as it resumes: nothing new
            ex.last_values = chunk
            await j.emit(f"values:{ex.values}", "values", step=ex.step, data=data)
            ex.values += 1


def _interrupted(chunk: Any) -> bool:
    return isinstance(chunk, dict) and "__interrupt__" in chunk


def _jsonable(value: Any) -> Any:
    """For the journal: what cannot be JSON is said as text, never an error."""
    try:
        return to_json(value)
    except Exception:
        return repr(value)[:2000]


@contextlib.contextmanager
def _untraced() -> Iterator[None]:
    """No LangSmith tracing in the driver (its nodes are thin: the work is on the hosts), so
    no tracer callback runs between LangGraph starting a node and the node's future."""
    try:
        from langsmith.run_helpers import tracing_context
    except ImportError:  # pragma: no cover
        yield
        return
    with tracing_context(enabled=False):
        yield


__all__ = ["GraphDriver", "thin_node"]
