"""LangGraph graphs on Nalar, unchanged: `nalar.langgraph.workflow(graph, name="support")`
registers a compiled `StateGraph` as a workflow whose every node execution is a future
(docs/langgraph.md). Needs the `langgraph` extra (`nalar[langgraph]`)."""

from nalar.langgraph.events import EVENT, graph_state
from nalar.langgraph.workflow import GraphWorkflow, workflow

__all__ = ["EVENT", "GraphWorkflow", "graph_state", "workflow"]
