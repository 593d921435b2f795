"""Agent graphs: Task/Plan graphs (the model, its load-time checks, YAML definitions), run as
Nalar workflows whose every Task and Plan execution is a future with an execution record
(docs/agent-graphs.md)."""

from nalar.agentgraph.loader import load_graph, load_graphs
from nalar.agentgraph.model import (
    END,
    AgentGraph,
    Edge,
    EdgeKind,
    Human,
    Node,
    Plan,
    PlanResult,
    Task,
    TaskResult,
    plan,
    task,
)
from nalar.agentgraph.runner import GraphWorkflow, workflow
from nalar.agentgraph.validate import GraphInvalid, build_graph

__all__ = ["END", "AgentGraph", "Edge", "EdgeKind", "GraphInvalid", "GraphWorkflow", "Human",
           "Node",
           "Plan",
           "PlanResult", "Task", "TaskResult", "build_graph", "load_graph", "load_graphs",
           "plan", "task", "workflow"]
