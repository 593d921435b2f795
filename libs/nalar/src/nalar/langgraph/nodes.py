"""A graph's nodes as methods of the built-in `tools` agent: what runs on the hosts.

Each node of a registered graph gets one function, made when the app is imported (so every
host that loads the app makes the same ones) and named `<workflow>__<node>`
(`tools.<workflow>__<node>` in policy.yaml and guardrails.yaml). A call runs the user's
node, unchanged, in the context LangGraph would give it: its input, its `config`
(`metadata.langgraph_node`, `langgraph_step`), `get_stream_writer()` (each chunk a `custom`
event of the run), and `interrupt()`: answered from the resume values the call brings, or,
when there is none left, the call ends with the interrupt's value instead of an update and
the driver asks for it by a signal.

This module uses LangGraph's internal config keys (the ones its Pregel loop gives a task)
for `interrupt()` and the stream writer; it is written against `langgraph==1.2.24`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph._internal._constants import (
    CONF,
    CONFIG_KEY_CHECKPOINT_NS,
    CONFIG_KEY_RUNTIME,
    CONFIG_KEY_SCRATCHPAD,
    CONFIG_KEY_SEND,
)
from langgraph._internal._runnable import RunnableCallable
from langgraph._internal._scratchpad import PregelScratchpad
from langgraph.errors import GraphInterrupt
from langgraph.pregel._algo import LazyAtomicCounter
from langgraph.runtime import Runtime

from nalar.context import current
from nalar.langgraph.codec import as_input, encode_output, to_json
from nalar.langgraph.events import HostWriter
from nalar.registry import METHOD_ATTR
from nalar.toolspec import tool_name


def method_name(workflow: str, node: str) -> str:
    """The `tools` method that runs `node` of the graph registered as `workflow` (a node
    name outside a tool name's characters gets a digest to stay unique)."""
    return tool_name(f"{workflow}__{node}")


def state_digest(payload: Any) -> str:
    """Of a node's input as sent: a re-run driver checks the result it is served is for it."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def node_function(workflow: str, node: str, runnable: Any,
                  input_schema: Any) -> Callable[..., Any]:
    """The function the `tools` agent runs for `node`: plain when the node is (it runs in a
    worker thread of the host), a coroutine function otherwise. Its arguments: the node's
    input as JSON (`model`: it was a pydantic model or a dataclass, revived as the node's
    input schema), the answers to its `interrupt()`s so far, and its super-step."""
    name = method_name(workflow, node)
    if not isinstance(runnable, Runnable):
        raise TypeError(f"node {node!r} of graph {workflow!r} is not a runnable")
    sync = isinstance(runnable, RunnableCallable) and runnable.func is not None
    fn: Callable[..., Any]

    if sync:
        def fn(state: Any = None, resume: list[Any] | None = None, step: int = 0,
               model: bool = False) -> Any:
            call = _NodeCall(node, step, resume or [])
            token = var_child_runnable_config.set(call.config)
            try:
                return call.outcome(lambda: runnable.invoke(
                    as_input(state, input_schema if model else None), call.config), state)
            finally:
                var_child_runnable_config.reset(token)
                call.writer.flush_sync()
    else:
        async def fn(state: Any = None, resume: list[Any] | None = None, step: int = 0,
                     model: bool = False) -> Any:
            call = _NodeCall(node, step, resume or [])
            token = var_child_runnable_config.set(call.config)
            try:
                try:
                    update = await runnable.ainvoke(
                        as_input(state, input_schema if model else None), call.config)
                except GraphInterrupt as exc:
                    return call.interrupted(exc, state)
                return call.result(update, state)
            finally:
                var_child_runnable_config.reset(token)
                await call.writer.flush()

    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = f"Node {node!r} of the LangGraph graph {workflow!r}."
    # a step of a graph, not a `@nalar.tool` a model calls: a replay treats it as any call
    # (served from the journal), where it would refuse a tool
    setattr(fn, METHOD_ATTR, {"tool": False})
    return fn


def _no_resume(consume: bool = False) -> None:
    """A node's answers are the resume values its call brings: none other."""
    return None


class _NodeCall:
    """One execution of a node: the config LangGraph would give it, and its outcome."""

    def __init__(self, node: str, step: int, resume: list[Any]) -> None:
        ctx = current()
        self.node, self.step = node, step
        self.writer = HostWriter(ctx, node, step)
        self.index = len(resume)
        self.config = cast(RunnableConfig, {
            "metadata": {"langgraph_node": node, "langgraph_step": step,
                         "nalar_run": ctx.run, "nalar_future": ctx.future},
            "run_name": node,
            CONF: {
                CONFIG_KEY_SCRATCHPAD: PregelScratchpad(
                    step=step, stop=step + 1, call_counter=LazyAtomicCounter(),
                    interrupt_counter=LazyAtomicCounter(),
                    get_null_resume=_no_resume,
                    resume=list(resume), subgraph_counter=LazyAtomicCounter()),
                CONFIG_KEY_SEND: lambda writes: None,  # resume bookkeeping: not needed here
                CONFIG_KEY_CHECKPOINT_NS: f"{node}:{ctx.run}.{ctx.future}",
                CONFIG_KEY_RUNTIME: Runtime(context=None, store=None,
                                            stream_writer=self.writer),
            },
        })

    def outcome(self, run: Callable[[], Any], state: Any) -> dict[str, Any]:
        try:
            update = run()
        except GraphInterrupt as exc:
            return self.interrupted(exc, state)
        return self.result(update, state)

    def result(self, update: Any, state: Any) -> dict[str, Any]:
        return {"node": self.node, "input": state_digest(state), **encode_output(update)}

    def interrupted(self, exc: GraphInterrupt, state: Any) -> dict[str, Any]:
        interrupts = exc.args[0] if exc.args else ()
        value = interrupts[0].value if interrupts else None
        return {"node": self.node, "input": state_digest(state),
                "interrupt": {"value": to_json(value, "interrupt value"),
                              "index": self.index}}


__all__ = ["method_name", "node_function", "state_digest"]
