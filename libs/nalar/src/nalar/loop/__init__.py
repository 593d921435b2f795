"""Tool-calling agents as durable workflows: `AgentLoop`, the built-in `llm` and `tools`
agents it calls, and how it reaches each kind of tool."""

from nalar.loop.agentloop import AgentLoop
from nalar.loop.builtin import (
    CONVERSATIONS_AGENT,
    LLM,
    LLM_AGENT,
    Conversations,
    function_tools_agent,
)
from nalar.loop.tools import FUNCTION_TOOLS_AGENT, TOOLS_ATTR, LoopTool, resolve

__all__ = [
    "CONVERSATIONS_AGENT",
    "FUNCTION_TOOLS_AGENT",
    "LLM",
    "LLM_AGENT",
    "TOOLS_ATTR",
    "AgentLoop",
    "Conversations",
    "LoopTool",
    "function_tools_agent",
    "resolve",
]
