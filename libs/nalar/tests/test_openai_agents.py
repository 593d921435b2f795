"""`nalar.openai_agents` with the real `openai-agents` package: the conversions between the
SDK's items and `llm.turn`, the copies of an agent graph (the user's objects untouched), and
a run that makes the same futures with the same arguments every time, in processes with
different hash seeds, with the network shut (tests/test_openai_agents_e2e.py runs the adapter
on a real stack)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    FileSearchTool,
    ModelSettings,
    RawResponsesStreamEvent,
    RunConfig,
    Runner,
    function_tool,
    handoff,
)
from agents.agent_output import AgentOutputSchema
from agents.items import ItemHelpers, TResponseInputItem
from agents.tool import ToolOutputText
from nalar.loop.tools import TOOLS_ATTR
from nalar.openai_agents import model as model_module
from nalar.openai_agents import workflow
from nalar.openai_agents.graph import AgentGraph, tool_output
from nalar.openai_agents.model import (
    NalarModelProvider,
    chat_request,
    json_part,
    model_response,
)
from nalar.registry import WORKFLOW_ATTR
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage
from pydantic import BaseModel


@function_tool
def lookup(city: str) -> str:
    """Look a city up."""
    return city


@function_tool
def other(n: int) -> int:
    """Another tool."""
    return n


class Verdict(BaseModel):
    city: str
    good: bool


def test_a_turn_is_chat_messages_and_tool_schemas() -> None:
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "hello"},
        {"type": "function_call", "id": "__fake_id__", "call_id": "call_1", "name": "lookup",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Oslo"},
        {"type": "message", "id": "__fake_id__", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "It is Oslo.", "annotations": []}]},
    ]
    target = Agent(name="closer", handoff_description="Closes.")
    messages, tools, choice, max_tokens, temperature = chat_request(
        "Be brief.", items, ModelSettings(), [lookup], AgentOutputSchema(Verdict),
        [handoff(target)])
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Be brief.")
    assert "Give your final answer as JSON matching this schema" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "tool", "assistant"]
    assert messages[2]["tool_calls"][0]["id"] == "call_1"
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "Oslo"}
    assert "__fake_id__" not in json.dumps(messages)  # no item ids go to the model
    assert tools is not None
    assert [t["function"]["name"] for t in tools] == ["lookup", "transfer_to_closer"]
    assert (choice, max_tokens, temperature) == (None, 1024, 0.0)
    _, _, choice, max_tokens, temperature = chat_request(
        None, "hi", ModelSettings(tool_choice="required", max_tokens=7, temperature=0.5),
        [lookup], None, [])
    assert (choice, max_tokens, temperature) == ("required", 7, 0.5)
    assert chat_request(None, "hi", ModelSettings(tool_choice="required"), [], None,
                        [])[1:3] == (None, None)  # no tools: no tool choice


def test_an_answer_is_output_items_with_the_call_ids() -> None:
    reply = {"content": "", "finish_reason": "tool_calls", "model": "simulated",
             "usage": {"prompt_tokens": 10, "completion_tokens": 3, "cached_tokens": 4},
             "tool_calls": [{"id": "call_a", "name": "lookup", "arguments": '{"city": "x"}'},
                            {"id": "", "name": "other", "arguments": '{"n": 1}'}]}
    response = model_response(reply, [{"role": "user", "content": "hi"}], None)
    calls = [i for i in response.output if isinstance(i, ResponseFunctionToolCall)]
    assert (calls[0].call_id, calls[0].name, calls[0].arguments) == \
        ("call_a", "lookup", '{"city": "x"}')
    # an engine that gives no id: one derived from the conversation (the same every time)
    again = model_response(reply, [{"role": "user", "content": "hi"}], None)
    assert calls[1].call_id.startswith("call_") and calls[1].call_id == \
        [i for i in again.output if isinstance(i, ResponseFunctionToolCall)][1].call_id
    assert (response.usage.requests, response.usage.input_tokens,
            response.usage.output_tokens, response.usage.total_tokens) == (1, 10, 3, 13)
    assert response.usage.input_tokens_details.cached_tokens == 4
    text = model_response({"content": 'Sure: {"city": "Oslo", "good": true}'}, [],
                          AgentOutputSchema(Verdict))
    [message] = text.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.content[0].text == '{"city": "Oslo", "good": true}'  # type: ignore[union-attr]


def test_a_streamed_run_gets_each_turn_as_one_completed_response(
        monkeypatch: pytest.MonkeyPatch) -> None:
    turns: list[list[dict[str, Any]]] = []

    class LLM:  # the `llm` agent's stub: its answers
        async def turn(self, messages: list[dict[str, Any]], *rest: Any) -> dict[str, Any]:
            turns.append(messages)
            if len(turns) == 1:
                return {"content": "", "tool_calls": [
                    {"id": "c1", "name": "other", "arguments": '{"n": 2}'}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
            return {"content": "two", "tool_calls": [],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 1}}

    monkeypatch.setattr(model_module, "stub", lambda name: LLM())

    async def main() -> tuple[list[str], Any, int]:
        run = Runner.run_streamed(Agent(name="x", tools=[other]), "hi", run_config=RunConfig(
            model_provider=NalarModelProvider(), tracing_disabled=True))
        kinds: list[str] = [e.data.type async for e in run.stream_events()
                 if isinstance(e, RawResponsesStreamEvent)]
        return kinds, run.final_output, run.context_wrapper.usage.total_tokens

    kinds, output, tokens = asyncio.run(main())
    assert kinds == ["response.created", "response.completed"] * 2
    assert output == "two" and tokens == 17
    assert turns[1][-1] == {"role": "tool", "tool_call_id": "c1", "content": "2"}


def test_json_part() -> None:
    assert json_part('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert json_part('The answer: [1, 2]') == "[1, 2]"
    assert json_part('{"a": 1}') == '{"a": 1}'


def test_the_users_agents_are_copied_not_changed() -> None:
    helper = Agent(name="helper", tools=[other])
    closer = Agent(name="closer", tools=[lookup])
    boss = Agent(name="boss", tools=[lookup, helper.as_tool(tool_name="ask_helper",
                                                           tool_description="Ask.")],
                 handoffs=[closer, handoff(helper)])
    tools_before = list(boss.tools)
    invokers = [t.on_invoke_tool for t in boss.tools]  # type: ignore[union-attr]
    wf = workflow(boss, name="boss-flow")
    assert boss.tools == tools_before
    assert [t.on_invoke_tool for t in boss.tools] == invokers  # type: ignore[union-attr]
    assert closer.tools == [lookup] and boss.handoffs[0] is closer
    entry: Any = wf.graph.entry
    assert entry is not boss and entry.tools[0] is not lookup
    assert entry.tools[0].on_invoke_tool is not lookup.on_invoke_tool
    # the agent tool runs the copy of its agent, the handoffs lead to copies
    inner = entry.tools[1]._agent_instance
    assert inner is not helper and inner.name == "helper" and inner.tools[0] is not other
    assert entry.handoffs[0] is not closer and entry.handoffs[0].name == "closer"
    assert entry.handoffs[1]._agent_ref() is inner
    # the tools the `tools` agent serves: every function tool of the graph, by name
    tools = getattr(wf, TOOLS_ATTR)
    assert sorted(tools) == ["lookup", "other"]
    assert tools["lookup"].agent == "tools" and tools["lookup"].method == "lookup"
    assert tools["lookup"].fn.__name__ == "lookup"
    assert tools["lookup"].spec.parameters == lookup.params_json_schema
    assert getattr(wf, WORKFLOW_ATTR).name == "boss-flow"


def test_a_tool_result_travels_as_json_and_means_the_same() -> None:
    outputs: list[Any] = [ToolOutputText(text="hi"), [ToolOutputText(text="a"),
                                                       {"type": "text", "text": "b"}],
                          {"a": 1}, 5, "x", Verdict(city="Oslo", good=True)]
    for output in outputs:
        sent = tool_output(lookup, output)
        assert json.loads(json.dumps(sent)) == sent
        assert ItemHelpers._convert_tool_output(sent) == ItemHelpers._convert_tool_output(output)


def test_one_tool_in_two_workflows_is_one_function() -> None:
    a = workflow(Agent(name="a", tools=[lookup]))
    b = workflow(Agent(name="b", tools=[lookup, other]))
    assert getattr(a, TOOLS_ATTR)["lookup"].fn is getattr(b, TOOLS_ATTR)["lookup"].fn


def test_what_cannot_run_on_nalar_is_refused_when_registered() -> None:
    @function_tool(name_override="lookup")
    def look_up_again(city: str) -> str:
        """Another tool of the same name."""
        return city

    with pytest.raises(ValueError, match="two different function tools are named 'lookup'"):
        AgentGraph(Agent(name="a", tools=[lookup], handoffs=[
            Agent(name="b", tools=[look_up_again])]))
    with pytest.raises(TypeError, match="only function tools"):
        AgentGraph(Agent(name="a", tools=[FileSearchTool(vector_store_ids=["v"])]))
    with pytest.raises(TypeError, match="Agent"):
        AgentGraph("not an agent")  # type: ignore[arg-type]


# -- the same futures, every time ------------------------------------------------------------
APP = '''
from agents import Agent, function_tool
from nalar.openai_agents import workflow

@function_tool
def tool_a(x: int) -> str:
    """A."""
    return f"a{x}"

@function_tool
async def tool_b(y: int) -> str:
    """B."""
    return f"b{y}"

helper = Agent(name="helper", instructions="Help.", tools=[tool_a])
closer = Agent(name="closer", instructions="Close.", handoff_description="Closes.")
boss = Agent(name="boss", instructions="Boss.", tools=[
    tool_a, tool_b, helper.as_tool(tool_name="ask_helper", tool_description="Ask the helper.")],
    handoffs=[closer])
boss_flow = workflow(boss, name="boss")
'''
SCRIPT = {"boss-go": [{"tool_calls": [{"name": "tool_a", "arguments": {"x": 1}},
                                  {"name": "tool_b", "arguments": {"y": 2}},
                                  {"name": "ask_helper", "arguments": {"input": "helper-q: one"}},
                                  {"name": "ask_helper", "arguments": {"input": "helper-q: two"}}]},
                  {"tool_calls": [{"name": "transfer_to_closer", "arguments": {}}]},
                  {"text": "done"}],
          "helper-q": [{"tool_calls": [{"name": "tool_a", "arguments": {"x": 3}}]},
                    {"text": "helped"}]}
RECORD = '''
import asyncio, json, socket, sys

def no_network(*args, **kwargs):
    raise RuntimeError(f"the network was tried: {args!r}")

socket.socket.connect = no_network
socket.create_connection = no_network
socket.getaddrinfo = no_network

from nalar.app import load_app
from nalar.engines import LLMSettings, build_engine
from nalar.local import LocalRuntime

made = []

class Recording(LocalRuntime):
    def submit(self, ctx, agent, method, args, kwargs, **options):
        made.append([ctx.future, agent, method, list(args), dict(kwargs)])
        return super().submit(ctx, agent, method, args, kwargs, **options)

async def main():
    async with Recording(load_app(sys.argv[1]), engine=build_engine(LLMSettings())) as rt:
        result = await rt.run("boss", {"input": "boss-go"})
    print(json.dumps({"result": result, "futures": made}))

asyncio.run(main())
'''


def test_a_run_makes_the_same_futures_with_the_same_arguments(tmp_path: Path) -> None:
    (tmp_path / "app" / "workflows").mkdir(parents=True)
    (tmp_path / "app" / "workflows" / "boss.py").write_text(textwrap.dedent(APP))
    (tmp_path / "record.py").write_text(RECORD)
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "NALAR_LLM_TIME_SCALE": "0.01",
               "NALAR_LLM_SIM_PARAMS": json.dumps({"script": SCRIPT}),
               "OPENAI_API_KEY": "", "OPENAI_BASE_URL": "http://192.0.2.1:9"}
        out = subprocess.run([sys.executable, str(tmp_path / "record.py"),
                              str(tmp_path / "app")], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]  # futures, their order and every argument
    assert runs[0]["result"] == "done"
    made = [f"{agent}.{method}" for _, agent, method, _, _ in runs[0]["futures"]]
    # the boss's turn; its two tools at once; the helper runs one after another (each its
    # turn, tool, turn); the boss's turn that hands off; the closer's answer
    assert made == ["llm.turn", "tools.tool_a", "tools.tool_b",
                    "llm.turn", "tools.tool_a", "llm.turn",
                    "llm.turn", "tools.tool_a", "llm.turn",
                    "llm.turn", "llm.turn"]
    helper_questions = [f[3][0][1]["content"] for f in runs[0]["futures"]
                        if f[2] == "turn" and f[3][0][0]["content"] == "Help."]
    assert helper_questions == ["helper-q: one", "helper-q: one", "helper-q: two", "helper-q: two"]
