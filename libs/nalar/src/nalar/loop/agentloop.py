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
    PermissionDenied,
    ReplayDiverged,
)
from pydantic import TypeAdapter, ValidationError

from nalar.future import Future
from nalar.loop.builtin import LLM_AGENT
from nalar.loop.tools import TOOLS_ATTR, LoopTool, resolve
from nalar.registry import WORKFLOW_ATTR, WorkflowSpec, agent_name
from nalar.stub import stub
from nalar.toolspec import ToolArgumentsError, ToolSpec, tool_spec

Message = dict[str, Any]
# everything else a tool call fails with is its answer to the model; a replay that would ask
# a tool something new must not go on along a made-up path
STOPS_THE_LOOP = (GuardrailExceeded, Cancelled, ReplayDiverged)


class AgentLoop:
    def __init__(self, name: str, *, instructions: str = "", tools: Sequence[Any] = (),
                 max_turns: int = 10, output_type: Any = str, tool_choice: Any = "auto",
                 max_tokens: int = 512, temperature: float = 0.0,
                 description: str | None = None, reset_tool_choice: bool = True,
                 max_tool_output: int = 20_000) -> None:
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive integer, not {max_turns!r}")
        self.name = agent_name(name)
        self.instructions = instructions
        self.max_turns = max_turns
        self.output_type = output_type
        self.tool_choice = tool_choice
        self.max_tokens, self.temperature = max_tokens, temperature
        self.description = description
        # after a turn with tool calls, "required" or a named tool goes back to "auto" (as in
        # the OpenAI Agents SDK), so a forced call does not force every later turn
        self.reset_tool_choice = reset_tool_choice
        # characters of one tool result the model reads (each later turn carries them all)
        self.max_tool_output = max_tool_output
        self._output = None if output_type is str else TypeAdapter(output_type)
        self.tools: dict[str, LoopTool] = {}
        for obj in tools:
            tool = LoopTool(obj.tool_spec(), loop=obj) if isinstance(obj, AgentLoop) \
                else resolve(obj)
            if tool.spec.name in self.tools:
                raise ValueError(f"agent loop {name}: two tools are named {tool.spec.name!r}")
            self.tools[tool.spec.name] = tool
        named = (tool_choice.get("function") or {}).get("name") \
            if isinstance(tool_choice, dict) else None
        if named is not None and named not in self.tools:
            raise ValueError(f"agent loop {name}: tool_choice names {named!r}, which is not "
                             f"one of its tools {sorted(self.tools)}")
        setattr(self, TOOLS_ATTR, self.tools)
        setattr(self, WORKFLOW_ATTR, WorkflowSpec(
            name=self.name, fn=self._workflow, is_async=True,
            signature=inspect.signature(self._workflow), doc=description or instructions))

    def __repr__(self) -> str:
        return f"<AgentLoop {self.name} tools={sorted(self.tools)}>"

    async def _workflow(self, input: str) -> Any:
        """The loop as a workflow: its input is the user's message."""
        return await self.answer(input)

    async def answer(self, input: str | list[Message]) -> Any:
        """Run the loop; its output in JSON form (what a workflow, or a parent loop that uses
        this one as a tool, gets)."""
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
        choice = self.tool_choice if schemas else None
        for turn in range(1, self.max_turns + 1):
            reply = await model.turn(messages, schemas, choice, self.max_tokens,
                                     self.temperature)
            calls = list(reply.get("tool_calls") or [])
            messages.append(_assistant(reply, calls))
            if not calls:
                value, problem = self._final(str(reply.get("content") or ""))
                if problem is None:
                    return value
                messages.append({"role": "user", "content": problem})
                continue
            if turn == self.max_turns:
                break  # no turn is left to read their results: they do not run
            if self.reset_tool_choice and choice not in (None, "auto", "none"):
                choice = "auto"
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
                started.append(tool.start(call.get("arguments")))
            except ToolArgumentsError as exc:
                started.append(f"error: {exc.message}")
            except Exception as exc:  # arguments that fit but cannot be sent (too deep, huge)
                started.append(f"error: the arguments of {tool.spec.name} cannot be used: "
                               f"{exc}")
        answers: list[str] = []
        try:
            for pending in started:
                if isinstance(pending, str):
                    answers.append(pending)
                    continue
                try:
                    answers.append(_cut(_text(await pending), self.max_tool_output))
                except STOPS_THE_LOOP:
                    raise
                except PermissionDenied:  # who asked and which rule stay out of the prompt
                    what = f"{pending.agent}.{pending.method}" \
                        if isinstance(pending, Future) else "a step of this tool"
                    answers.append(f"error (permission_denied): {what} is not allowed in "
                                   "this run")
                except NalarError as exc:
                    answers.append(f"error ({exc.error_code}): {exc.message}")
        finally:
            for pending in started[len(answers):]:
                if inspect.iscoroutine(pending):
                    pending.close()  # an inline loop that never started
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


def _cut(text: str, limit: int) -> str:
    """A tool result the model reads: its head and tail when it is longer than `limit`."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return (f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n"
            f"{text[-half:]}")


def _json_part(content: str) -> str:
    """The JSON in a model's answer: the whole text, else the first JSON object or array in
    it (models wrap it in prose or a code fence)."""
    text = content.strip()
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                _, end = decoder.raw_decode(text, i)
            except ValueError:
                continue
            return text[i:end]
    return text
