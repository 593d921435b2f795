"""The OpenAI Agents SDK's `Model` on Nalar: every model call of an SDK agent is one future,
`llm.turn` on the built-in `llm` agent (routed, authorized, guarded, journaled, and served
from the futures stream when the run's driver runs again).

The SDK speaks Responses items; the `llm` agent speaks chat completions. Both directions go
through the SDK's own `chatcmpl_converter.Converter`, as its `OpenAIChatCompletionsModel`
does: input items, tools, handoffs and the tool choice become chat messages and tool schemas,
and the answer (its text and tool calls, with the engine's call ids) becomes output items.
Nothing random or timed goes into a turn's arguments: the messages are made of the items
the run has seen (the SDK's placeholder ids and the engines' call ids), so a driver that
runs again asks the same turns in the same order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import ModelBehaviorError, UserError
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.chatcmpl_converter import Converter
from agents.models.fake_id import FAKE_RESPONSES_ID
from agents.models.interface import Model, ModelProvider, ModelTracing
from agents.tool import Tool
from agents.usage import Usage
from openai import Omit
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageFunctionToolCall
from openai.types.chat.chat_completion_message_function_tool_call import Function
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseUsage,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from nalar.loop.builtin import LLM_AGENT
from nalar.stub import stub

DEFAULT_MAX_TOKENS = 1024  # a turn's budget when neither the agent nor the run sets one
Message = dict[str, Any]


class NalarModel(Model):
    """A model whose every call is an `llm.turn` future on the engine of the host that runs
    it; the model name the agent gives is a label only (the host's `NALAR_LLM_*` decide)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    async def get_response(self, system_instructions: str | None,
                           input: str | list[TResponseInputItem],
                           model_settings: ModelSettings, tools: list[Tool],
                           output_schema: AgentOutputSchemaBase | None,
                           handoffs: list[Handoff[Any, Any]], tracing: ModelTracing, *,
                           previous_response_id: str | None = None,
                           conversation_id: str | None = None,
                           prompt: ResponsePromptParam | None = None) -> ModelResponse:
        if previous_response_id is not None or conversation_id is not None or \
                prompt is not None:
            raise UserError("Nalar's model keeps no server-side conversation state: "
                            "previous_response_id, conversation_id and prompt are not supported")
        request = chat_request(system_instructions, input, model_settings, tools,
                               output_schema, handoffs)
        reply = await stub(LLM_AGENT).turn(*request)
        return model_response(reply, request[0], output_schema)

    async def stream_response(self, system_instructions: str | None,
                              input: str | list[TResponseInputItem],
                              model_settings: ModelSettings, tools: list[Tool],
                              output_schema: AgentOutputSchemaBase | None,
                              handoffs: list[Handoff[Any, Any]], tracing: ModelTracing, *,
                              previous_response_id: str | None = None,
                              conversation_id: str | None = None,
                              prompt: ResponsePromptParam | None = None,
                              ) -> AsyncIterator[TResponseStreamEvent]:
        """The one future's answer as a stream: `response.created`, then `response.completed`
        with every output item (no text deltas: the tokens of a turn reach the run's events
        stream as `token` events instead, docs/openai-agents.md)."""
        answer = await self.get_response(
            system_instructions, input, model_settings, tools, output_schema, handoffs,
            tracing, previous_response_id=previous_response_id,
            conversation_id=conversation_id, prompt=prompt)
        u = answer.usage
        response = Response(
            id=FAKE_RESPONSES_ID, created_at=0, model=self.name or "nalar", object="response",
            output=answer.output, tool_choice="auto", tools=[], parallel_tool_calls=False,
            top_p=model_settings.top_p, temperature=model_settings.temperature,
            usage=ResponseUsage(
                input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                total_tokens=u.total_tokens,
                input_tokens_details=u.input_tokens_details,
                output_tokens_details=OutputTokensDetails(reasoning_tokens=0)))
        yield ResponseCreatedEvent(type="response.created", sequence_number=0,
                                   response=response.model_copy(update={"output": []}))
        yield ResponseCompletedEvent(type="response.completed", sequence_number=1,
                                     response=response)


class NalarModelProvider(ModelProvider):
    """Every model name an agent or a run names is a `NalarModel` (nothing reaches OpenAI)."""

    def get_model(self, model_name: str | None) -> Model:
        return NalarModel(model_name)


def chat_request(system_instructions: str | None, input: str | list[TResponseInputItem],
                 model_settings: ModelSettings, tools: Iterable[Tool],
                 output_schema: AgentOutputSchemaBase | None,
                 handoffs: Iterable[Handoff[Any, Any]],
                 ) -> tuple[list[Message], list[Message] | None, Any, int, float]:
    """The arguments of `llm.turn`: messages, tool schemas, tool choice, max tokens and
    temperature (JSON values only)."""
    messages = plain(Converter.items_to_messages(input))
    system = system_instructions or ""
    if output_schema is not None and not output_schema.is_plain_text():
        # the `llm` agent has no response format: the schema is asked for in words
        system += ("\n\nGive your final answer as JSON matching this schema: "
                   + json.dumps(output_schema.json_schema(), sort_keys=True))
    if system.strip():
        messages.insert(0, {"role": "system", "content": system.strip()})
    schemas = [plain(Converter.tool_to_openai(t)) for t in tools] + \
        [plain(Converter.convert_handoff_tool(h)) for h in handoffs]
    choice = Converter.convert_tool_choice(model_settings.tool_choice)
    return (messages, schemas or None,
            None if not schemas or isinstance(choice, Omit) else plain(choice),
            model_settings.max_tokens or DEFAULT_MAX_TOKENS,
            model_settings.temperature if model_settings.temperature is not None else 0.0)


def model_response(reply: Mapping[str, Any], messages: list[Message],
                   output_schema: AgentOutputSchemaBase | None) -> ModelResponse:
    """An `llm.turn` answer as the SDK's `ModelResponse` (output items and usage)."""
    content = str(reply.get("content") or "")
    calls = list(reply.get("tool_calls") or [])
    if not calls and output_schema is not None and not output_schema.is_plain_text():
        content = json_part(content)
    if not content and not calls and reply.get("finish_reason") == "length":
        raise ModelBehaviorError("the model ran out of tokens before answering "
                                 "(finish_reason 'length'): raise max_tokens")
    message = ChatCompletionMessage(role="assistant", content=content or None, tool_calls=[
        ChatCompletionMessageFunctionToolCall(
            id=str(c.get("id") or _call_id(messages, i)), type="function",
            function=Function(name=str(c.get("name") or ""),
                              arguments=str(c.get("arguments") or "{}")))
        for i, c in enumerate(calls)] or None)
    raw = reply.get("usage")
    u: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return ModelResponse(
        output=Converter.message_to_output_items(message),
        usage=Usage(requests=1, input_tokens=prompt, output_tokens=completion,
                    total_tokens=prompt + completion,
                    input_tokens_details=InputTokensDetails.model_validate(
                        {"cached_tokens": int(u.get("cached_tokens") or 0),
                         "cache_write_tokens": 0})),
        response_id=None)


def _call_id(messages: list[Message], i: int) -> str:
    """A call id for an engine that gave none: derived from the conversation, so the same
    turn gets the same id when a driver runs again."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
    return f"call_{digest}_{i}"


def json_part(content: str) -> str:
    """The JSON in a model's answer (models wrap it in prose or a code fence)."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    return text[min(starts):] if starts and not text.startswith(('"', "{", "[")) else text


def plain(value: Any) -> Any:
    """JSON values only (the converter's TypedDicts may hold iterables and models)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="json", exclude_none=True))
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    raise TypeError(f"not a JSON value: {value!r}")


__all__ = ["NalarModel", "NalarModelProvider", "chat_request", "json_part", "model_response",
           "plain"]
