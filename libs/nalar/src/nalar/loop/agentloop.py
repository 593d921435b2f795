"""`nalar.AgentLoop`: a tool-calling agent (instructions, tools, `max_turns`, an output type)
that runs as a durable workflow.

The model only proposes; the runtime executes. Each LLM turn is a future on the built-in
`llm` agent, each proposed tool call a future on the agent that owns the tool (parallel
calls in parallel), so every step is routed, authorized (policy.yaml), checked against the
guardrails before the spend, retried by its policy, recorded in the journal and the futures
stream, and served from that stream when the run's driver runs again after a crash: the
turns and tool calls that finished are not repeated. The loop is deterministic given those
results (futures are numbered in the order the loop makes them), which is what makes that
resumption, and a replay with an overridden tool result, line up.

Arguments a model proposes are checked against the tool's schema first: a call that does
not fit (or names no tool) never runs; the model gets the error as the tool's result, as it
gets a tool's own failure (`PermissionDenied`, an exception in the tool, a timeout). A
guardrail that stops a step, or a cancellation, ends the loop.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

from nalar_common.errors import (
    Cancelled,
    GuardrailExceeded,
    InvalidInput,
    MaxTurnsExceeded,
    NalarError,
)
from pydantic import TypeAdapter, ValidationError

from nalar.loop.builtin import LLM_AGENT
from nalar.loop.tools import TOOLS_ATTR, LoopTool, resolve
from nalar.registry import WORKFLOW_ATTR, WorkflowSpec, agent_name
from nalar.stub import stub
from nalar.toolspec import ToolArgumentsError, ToolSpec, tool_spec

Message = dict[str, Any]
STOPS_THE_LOOP = (GuardrailExceeded, Cancelled)  # everything else is the tool's answer


class AgentLoop:
    def __init__(self, name: str, *, instructions: str = "", tools: Sequence[Any] = (),
                 max_turns: int = 10, output_type: Any = str, tool_choice: Any = "auto",
                 max_tokens: int = 512, temperature: float = 0.0,
                 description: str | None = None) -> None:
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive integer, not {max_turns!r}")
        self.name = agent_name(name)
        self.instructions = instructions
        self.max_turns = max_turns
        self.output_type = output_type
        self.tool_choice = tool_choice
        self.max_tokens, self.temperature = max_tokens, temperature
        self.description = description
        self._output = None if output_type is str else TypeAdapter(output_type)
        self.tools: dict[str, LoopTool] = {}
        for obj in tools:
            tool = LoopTool(obj.tool_spec(), loop=obj) if isinstance(obj, AgentLoop) \
                else resolve(obj)
            if tool.spec.name in self.tools:
                raise ValueError(f"agent loop {name}: two tools are named {tool.spec.name!r}")
            self.tools[tool.spec.name] = tool
        setattr(self, TOOLS_ATTR, self.tools)
        setattr(self, WORKFLOW_ATTR, WorkflowSpec(
            name=self.name, fn=self._workflow, is_async=True,
            signature=inspect.signature(self._workflow), doc=description or instructions))

    def __repr__(self) -> str:
        return f"<AgentLoop {self.name} tools={sorted(self.tools)}>"

    async def _workflow(self, input: str) -> Any:
        """The loop as a workflow: its input is the user's message."""
        value = await self.run(input)
        return value if self._output is None else self._output.dump_python(value, mode="json")

    def tool_spec(self) -> ToolSpec:
        """This loop as another loop's tool: one `input` text."""
        async def ask(input: str) -> Any:  # its signature is the tool's parameters
            ...

        return tool_spec(ask, name=self.name,
                         description=self.description or self.instructions[:500])

    # -- the loop --------------------------------------------------------------------------
    async def run(self, input: str | list[Message], *,
                   transcript: list[Message] | None = None) -> Any:
        """Run the loop in the current run (a workflow, or another loop's tool call); the
        conversation (what the model saw, tool results and errors included) goes into
        `transcript` if one is given, also when the loop fails."""
        messages = self._start(input)
        try:
            return await self._turns(messages)
        finally:
            if transcript is not None:
                transcript.extend(messages)

    async def _turns(self, messages: list[Message]) -> Any:
        schemas = [t.spec.schema() for t in self.tools.values()] or None
        model = stub(LLM_AGENT)
        for _ in range(self.max_turns):
            reply = await model.turn(messages, schemas, self.tool_choice if schemas else None,
                                     self.max_tokens, self.temperature)
            calls = list(reply.get("tool_calls") or [])
            messages.append(_assistant(reply, calls))
            if not calls:
                value, problem = self._final(str(reply.get("content") or ""))
                if problem is None:
                    return value
                messages.append({"role": "user", "content": problem})
                continue
            for call, answer in zip(calls, await self._execute(calls), strict=True):
                messages.append({"role": "tool", "tool_call_id": call.get("id", ""),
                                 "content": answer})
        raise MaxTurnsExceeded(f"agent loop {self.name} did not finish within {self.max_turns}"
                               " turns", details={"loop": self.name,
                                                  "max_turns": self.max_turns})

    def _start(self, input: str | list[Message]) -> list[Message]:
        messages: list[Message] = []
        system = self.instructions
        if self._output is not None:
            system += ("\n\nGive your final answer as JSON matching this schema: "
                       + json.dumps(self._output.json_schema()))
        if system.strip():
            messages.append({"role": "system", "content": system.strip()})
        if isinstance(input, str):
            messages.append({"role": "user", "content": input})
        elif isinstance(input, list) and all(isinstance(m, dict) for m in input):
            messages.extend(input)
        else:
            raise InvalidInput(f"agent loop {self.name}: input must be a text or a list of "
                               "chat messages")
        return messages

    async def _execute(self, calls: list[dict[str, Any]]) -> list[str]:
        """Start every proposed call that fits (futures run in parallel), then collect each
        answer in order. Inline loops run one after another, so a driver that runs again
        numbers its futures the same way."""
        started: list[Any] = []
        for call in calls:
            tool = self.tools.get(str(call.get("name")))
            if tool is None:
                started.append(f"error: there is no tool {call.get('name')!r}; the tools are "
                               f"{', '.join(sorted(self.tools))}")
                continue
            try:
                started.append(tool.start(tool.spec.check(call.get("arguments"))))
            except ToolArgumentsError as exc:
                started.append(f"error: {exc.message}")
        answers = []
        for pending in started:
            if isinstance(pending, str):
                answers.append(pending)
                continue
            try:
                answers.append(_text(await pending))
            except STOPS_THE_LOOP:
                raise
            except NalarError as exc:
                answers.append(f"error ({exc.error_code}): {exc.message}")
        return answers

    def _final(self, content: str) -> tuple[Any, str | None]:
        """The output, or what to tell the model when it does not fit the output type."""
        if self._output is None:
            return content, None
        try:
            return self._output.validate_json(_json_part(content)), None
        except ValidationError as exc:
            return None, (f"Your final answer does not fit the expected output: "
                          f"{exc.errors()[0]['msg'] if exc.errors() else exc}. Answer again "
                          f"with JSON matching {json.dumps(self._output.json_schema())}.")


def _assistant(reply: dict[str, Any], calls: list[dict[str, Any]]) -> Message:
    msg: Message = {"role": "assistant", "content": reply.get("content") or None}
    if calls:
        msg["tool_calls"] = [{"id": c.get("id", ""), "type": "function",
                              "function": {"name": c.get("name", ""),
                                           "arguments": c.get("arguments") or "{}"}}
                             for c in calls]
    return msg


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _json_part(content: str) -> str:
    """The JSON in a model's answer (models wrap it in prose or a code fence)."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    return text[min(starts):] if starts and not text.startswith(('"', "{", "[")) else text
