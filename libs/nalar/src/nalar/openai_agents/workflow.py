"""`nalar.openai_agents.workflow(agent, name=...)`: an OpenAI Agents SDK agent as a Nalar
workflow. The SDK's `Runner` runs in the workflow's driver on copies of the user's agents
(graph.py), with Nalar's model provider (model.py) and tracing off: every model call and
every function tool call is a future; handoffs, agents-as-tools, guardrails, the output type
and `max_turns` are the SDK's own.

The run is deterministic given its futures' results (no ids, times or randomness go into a
future's arguments), so a driver that runs again after a crash gets every finished turn and
tool call from the futures stream: nothing is asked or done twice.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import replace
from typing import Any

from agents import Agent, Runner
from agents.exceptions import (
    AgentsException,
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    ToolInputGuardrailTripwireTriggered,
    ToolOutputGuardrailTripwireTriggered,
)
from agents.exceptions import MaxTurnsExceeded as SDKMaxTurnsExceeded
from agents.models.interface import Model
from agents.result import RunResult
from agents.run import DEFAULT_MAX_TURNS, RunConfig
from agents.run_config import ToolErrorFormatterArgs
from nalar_common.errors import (
    AgentError,
    GuardrailTripwire,
    InvalidInput,
    MaxTurnsExceeded,
    NalarError,
)
from pydantic_core import to_jsonable_python

from nalar.loop.tools import TOOLS_ATTR, LoopTool
from nalar.openai_agents.graph import INLINE, AgentGraph
from nalar.openai_agents.model import NalarModelProvider
from nalar.openai_agents.session import NalarSession
from nalar.registry import WORKFLOW_ATTR, WorkflowSpec, agent_name


class OpenAIAgentsWorkflow:
    """A Nalar workflow running an SDK agent: input `{"input": "<the user's message>"}` (or a
    list of Responses input items), result the run's `final_output` in JSON form."""

    def __init__(self, agent: Agent[Any], *, name: str | None = None,
                 max_turns: int = DEFAULT_MAX_TURNS, run_config: RunConfig | None = None,
                 description: str | None = None, session: bool = False) -> None:
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive integer, not {max_turns!r}")
        try:
            self.name = agent_name(name or agent.name)
        except ValueError:
            raise ValueError(f"workflow name {name or agent.name!r} must be 1-128 of "
                             "[A-Za-z0-9_-], starting with a letter or digit: pass "
                             "name=...") from None
        self.agent = agent
        self.max_turns = max_turns
        self.session = session  # the SDK session is the run's Nalar session (NalarSession)
        self.graph = AgentGraph(agent)
        base = run_config or RunConfig()
        self.run_config = replace(
            base, model_provider=NalarModelProvider(), tracing_disabled=True,
            model=None if isinstance(base.model, Model) else base.model,
            tool_error_formatter=base.tool_error_formatter or _nalar_error_text)
        self.tools: dict[str, LoopTool] = dict(self.graph.tools)
        setattr(self, TOOLS_ATTR, self.tools)
        doc = description or (agent.instructions if isinstance(agent.instructions, str)
                              else None) or agent.handoff_description
        setattr(self, WORKFLOW_ATTR, WorkflowSpec(
            name=self.name, fn=self._workflow, is_async=True,
            signature=inspect.signature(self._workflow), doc=doc))

    def __repr__(self) -> str:
        return f"<OpenAIAgentsWorkflow {self.name} agent={self.agent.name!r} " \
               f"tools={sorted(self.tools)}>"

    async def _workflow(self, input: str | list[dict[str, Any]]) -> Any:
        """Run the agent on the user's message: its final output."""
        result = await self.run(input)
        return to_jsonable_python(result.final_output)

    async def run(self, input: str | list[Any], *, context: Any = None) -> RunResult:
        """Run the agent in the current run (a workflow, or an agent method's call): the SDK's
        `RunResult`. SDK failures become Nalar errors (`error_for`)."""
        token = INLINE.set(asyncio.Lock())
        try:
            result = await Runner.run(self.graph.entry, input, context=context,
                                      max_turns=self.max_turns, run_config=self.run_config,
                                      session=NalarSession() if self.session else None)
        except Exception as exc:
            error = error_for(exc)
            if error is exc:
                raise
            # a Nalar error of a future is raised as it is; the SDK's own, mapped
            raise error from (None if _in_chain(error, exc) else exc)
        finally:
            INLINE.reset(token)
        if result.interruptions:
            raise InvalidInput(f"workflow {self.name}: tool approvals (needs_approval) are not "
                               "supported on Nalar; policy.yaml decides who may call a tool")
        return result


def workflow(agent: Agent[Any], *, name: str | None = None,
             max_turns: int = DEFAULT_MAX_TURNS, run_config: RunConfig | None = None,
             description: str | None = None, session: bool = False) -> OpenAIAgentsWorkflow:
    """Register an SDK agent as a Nalar workflow: `research = workflow(triage, name="research")`
    at module level in the app's `workflows/*.py`. `session=True`: the SDK keeps the
    conversation in the run's Nalar session (`NalarSession`), so runs with the same
    `session_id` continue it."""
    return OpenAIAgentsWorkflow(agent, name=name, max_turns=max_turns, run_config=run_config,
                                description=description, session=session)


def error_for(exc: BaseException) -> BaseException:
    """The Nalar error an SDK run failure is: a Nalar error a future raised (found through
    the SDK's wrapping), a tripped guardrail, running out of turns, or the SDK's complaint."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NalarError):
            return seen
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, InputGuardrailTripwireTriggered | OutputGuardrailTripwireTriggered):
        result = exc.guardrail_result
        kind = "input" if isinstance(exc, InputGuardrailTripwireTriggered) else "output"
        name = result.guardrail.get_name()
        return GuardrailTripwire(f"the {kind} guardrail {name} tripped", details={
            "guardrail": name, "kind": kind,
            "output_info": to_jsonable_python(result.output.output_info, fallback=str)})
    if isinstance(exc, ToolInputGuardrailTripwireTriggered |
                  ToolOutputGuardrailTripwireTriggered):
        kind = "tool_input" if isinstance(exc, ToolInputGuardrailTripwireTriggered) \
            else "tool_output"
        name = exc.guardrail.get_name()
        return GuardrailTripwire(f"the {kind} guardrail {name} tripped", details={
            "guardrail": name, "kind": kind,
            "output_info": to_jsonable_python(exc.output.output_info, fallback=str)})
    if isinstance(exc, SDKMaxTurnsExceeded):
        return MaxTurnsExceeded(exc.message, details={"sdk": "openai-agents"})
    if isinstance(exc, AgentsException):
        return AgentError(f"{type(exc).__name__}: {exc}", details={"sdk": "openai-agents"})
    return exc


def _in_chain(error: BaseException, exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if seen is error:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _nalar_error_text(args: ToolErrorFormatterArgs[Any]) -> str | None:
    """What the model reads for a tool whose future failed with a Nalar error: its code and
    message (a denied tool, a timeout are worth telling); an exception in the tool itself
    (`agent_error`) gets the SDK's default text, which hides what the exception says."""
    error = args.error
    if isinstance(error, NalarError) and not isinstance(error, AgentError):
        return f"error ({error.error_code}): {error.message}"
    return None


__all__ = ["GuardrailTripwire", "OpenAIAgentsWorkflow", "error_for", "workflow"]
