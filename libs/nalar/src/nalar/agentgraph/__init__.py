"""Agent graphs: Task/Plan graphs (the model, its load-time checks, YAML definitions).
Execution as Nalar futures, execution records, fork and replay come next (issue 21)."""

from nalar.agentgraph.loader import load_graph, load_graphs
from nalar.agentgraph.model import (
    END,
    AgentGraph,
    Edge,
    EdgeKind,
    Node,
    Plan,
    PlanResult,
    Task,
    TaskResult,
    plan,
    task,
)
from nalar.agentgraph.validate import GraphInvalid, build_graph

__all__ = ["END", "AgentGraph", "Edge", "EdgeKind", "GraphInvalid", "Node", "Plan",
           "PlanResult", "Task", "TaskResult", "build_graph", "load_graph", "load_graphs",
           "plan", "task"]
