"""OpenAI Agents SDK agents as Nalar workflows, the agents unchanged (docs/openai-agents.md):

    from nalar.openai_agents import workflow
    research = workflow(triage_agent, name="research")   # in the app's workflows/*.py

Every model call is an `llm.turn` future, every function tool call a `tools.<name>` future;
handoffs, agents-as-tools, guardrails and output types are the SDK's own. Needs the
`openai-agents` package.
"""

from nalar.openai_agents.graph import AgentGraph
from nalar.openai_agents.model import NalarModel, NalarModelProvider
from nalar.openai_agents.session import NalarSession
from nalar.openai_agents.workflow import (
    GuardrailTripwire,
    OpenAIAgentsWorkflow,
    error_for,
    workflow,
)

__all__ = ["AgentGraph", "GuardrailTripwire", "NalarModel", "NalarModelProvider",
           "NalarSession", "OpenAIAgentsWorkflow", "error_for", "workflow"]
