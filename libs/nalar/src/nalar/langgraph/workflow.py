"""`nalar.langgraph.workflow(graph, name=...)`: a compiled LangGraph `StateGraph`, unchanged,
as a Nalar workflow.

The workflow's input is the graph's input state (a JSON object), its result the graph's
output state as JSON. Each node becomes a method of the built-in `tools` agent
(`tools.<name>__<node>`, `nalar.langgraph.nodes`), each execution of a node a future of the
run; the graph itself runs in the workflow's driver with thin nodes
(`nalar.langgraph.driver`).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

from langgraph._internal._runnable import RunnableCallable
from langgraph.graph.state import CompiledStateGraph

from nalar.langgraph.driver import GraphDriver, thin_node
from nalar.langgraph.nodes import node_function
from nalar.loop.tools import FUNCTION_TOOLS_AGENT, TOOLS_ATTR, LoopTool
from nalar.registry import WORKFLOW_ATTR, WorkflowSpec, agent_name
from nalar.toolspec import tool_spec


class GraphWorkflow:
    """A graph registered as a workflow: put it at module level in an app's `workflows/*.py`
    (every host imports the app, and with it the functions that run the graph's nodes)."""

    def __init__(self, graph: Any, *, name: str, description: str | None = None,
                 interrupt_timeout: float | None = None,
                 recursion_limit: int | None = None) -> None:
        if not isinstance(graph, CompiledStateGraph):
            raise TypeError("nalar.langgraph.workflow takes a compiled StateGraph "
                            f"(`builder.compile()`), not {type(graph).__name__}")
        if graph.interrupt_before_nodes or graph.interrupt_after_nodes:
            raise ValueError(f"graph {name!r}: interrupt_before/interrupt_after are not "
                             "supported on Nalar; call `interrupt()` in the node instead")
        if interrupt_timeout is not None and not interrupt_timeout > 0:
            raise ValueError("interrupt_timeout must be positive")
        self.name = agent_name(name)
        self.graph = graph
        self.tools: dict[str, LoopTool] = {}
        self.methods: dict[str, str] = {}  # node -> the `tools` method that runs it
        nodes: dict[str, Any] = {}
        for node, spec in graph.builder.nodes.items():
            fn = node_function(self.name, node, spec.runnable, spec.input_schema)
            method = self.methods[node] = fn.__name__
            self.tools[method] = LoopTool(tool_spec(fn), agent=FUNCTION_TOOLS_AGENT,
                                          method=method, fn=fn)
            # the driver's node: thin; retries, caching and timeouts are Nalar's (the
            # future's retry policy and deadline), not LangGraph's in the driver
            nodes[node] = dataclasses.replace(
                spec, runnable=RunnableCallable(None, thin_node(node, method), name=node,
                                                trace=False),
                retry_policy=None, cache_policy=None, timeout=None)
        builder = copy.copy(graph.builder)
        builder.nodes = nodes
        builder.compiled = False
        self.driver = GraphDriver(builder.compile(name=graph.name),
                                  recursion_limit=recursion_limit,
                                  interrupt_timeout=interrupt_timeout)
        setattr(self, TOOLS_ATTR, self.tools)
        fn = self.driver.workflow_function()
        setattr(self, WORKFLOW_ATTR, WorkflowSpec(
            name=self.name, fn=fn, is_async=True, signature=inspect.signature(fn),
            doc=description or f"The LangGraph graph {graph.name!r}: its input state in, its "
            "output state out."))

    def __repr__(self) -> str:
        return f"<GraphWorkflow {self.name} nodes={sorted(self.graph.builder.nodes)}>"


def workflow(graph: Any, *, name: str, description: str | None = None,
             interrupt_timeout: float | None = None,
             recursion_limit: int | None = None) -> GraphWorkflow:
    """Register a compiled LangGraph `StateGraph` as the workflow `name`, unchanged:
    `support = nalar.langgraph.workflow(graph, name="support")` at module level of a
    `workflows/*.py`. `interrupt_timeout`: seconds an `interrupt()` waits for its signal
    before the run fails with `Timeout`; `recursion_limit`: LangGraph's, per run."""
    return GraphWorkflow(graph, name=name, description=description,
                         interrupt_timeout=interrupt_timeout, recursion_limit=recursion_limit)


__all__ = ["GraphWorkflow", "workflow"]
