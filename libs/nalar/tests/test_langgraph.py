"""`nalar.langgraph` without a stack: graphs registered unchanged give, in local mode, what
LangGraph gives them (`Send`, `Command`, reducers, pydantic states, LangChain messages), each
node execution a future numbered the same on every run; how state travels as JSON; what is
refused. The stack's side (signals, events, a lost host) is tests/test_langgraph_e2e.py."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.types import Command, Send
from nalar.app import load_app
from nalar.langgraph import graph_state, workflow
from nalar.langgraph.codec import decode_output, encode_output, from_json, to_json
from nalar.langgraph.nodes import method_name
from nalar.local import run_local
from nalar_common.errors import AgentError, InvalidInput
from pydantic import BaseModel

APP = '''
from __future__ import annotations

import asyncio
import operator
import random
from typing import Annotated, Any, TypedDict

import nalar.langgraph
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Send, interrupt
from nalar.context import current_or_none
from pydantic import BaseModel


# six nodes in one super-step, each taking its time: the futures' ids say who got which
class Fan(TypedDict, total=False):
    seen: Annotated[list[str], operator.add]


def worker(i: int) -> Any:
    async def work(state: Fan) -> dict[str, Any]:
        await asyncio.sleep(random.random() / 50)
        ctx = current_or_none()
        return {"seen": [f"w{i}@{ctx.future if ctx else '-'}"]}
    return work


fan_builder = StateGraph(Fan)
for i in range(6):
    fan_builder.add_node(f"w{i}", worker(i))
    fan_builder.add_edge(START, f"w{i}")
fan = nalar.langgraph.workflow(fan_builder.compile(), name="fan")


# Send (map-reduce) and Command (update and goto) as LangGraph runs them
class Map(TypedDict, total=False):
    xs: list[int]
    squares: Annotated[list[int], operator.add]
    path: Annotated[list[str], operator.add]
    total: int


def spread(state: Map) -> list[Send]:
    return [Send("square", {"x": x}) for x in state["xs"]]


def square(arg: dict[str, Any]) -> dict[str, Any]:
    return {"squares": [arg["x"] * arg["x"]]}


def router(state: Map) -> Command:
    return Command(update={"path": ["router"]}, goto="add" if state["squares"] else END)


def add(state: Map) -> dict[str, Any]:
    return {"total": sum(state["squares"]), "path": ["add"]}


map_builder = StateGraph(Map)
map_builder.add_node("square", square)
map_builder.add_node("router", router, destinations=("add", END))
map_builder.add_node("add", add)
map_builder.add_conditional_edges(START, spread, ["square"])
map_builder.add_edge("square", "router")
mapreduce_graph = map_builder.compile()
mapreduce = nalar.langgraph.workflow(mapreduce_graph, name="mapreduce")


# a pydantic state: the node gets the model, as in LangGraph
class Counter(BaseModel):
    text: str
    count: int = 0


def bump(state: Counter) -> dict[str, Any]:
    return {"count": state.count + len(state.text)}


counter_builder = StateGraph(Counter)
counter_builder.add_node("bump", bump)
counter_builder.add_edge(START, "bump")
counter_graph = counter_builder.compile()
counter = nalar.langgraph.workflow(counter_graph, name="counter")


# LangChain messages in the state, revived on the host
async def echo(state: MessagesState) -> dict[str, Any]:
    last = state["messages"][-1]
    return {"messages": [AIMessage(content=f"echo: {last.content} ({last.type})")]}


chat_builder = StateGraph(MessagesState)
chat_builder.add_node("echo", echo)
chat_builder.add_edge(START, "echo")
chat_graph = chat_builder.compile()
chat = nalar.langgraph.workflow(chat_graph, name="chat")


# a node that fails, and one that asks a human
class Plain(TypedDict, total=False):
    x: int


def boom(state: Plain) -> dict[str, Any]:
    raise ValueError(f"no good: {state['x']}")


def ask(state: Plain) -> dict[str, Any]:
    return {"x": interrupt("how much?")}


failing_builder = StateGraph(Plain)
failing_builder.add_node("boom", boom)
failing_builder.add_edge(START, "boom")
failing = nalar.langgraph.workflow(failing_builder.compile(), name="failing")

asking_builder = StateGraph(Plain)
asking_builder.add_node("ask", ask)
asking_builder.add_edge(START, "ask")
asking = nalar.langgraph.workflow(asking_builder.compile(), name="asking")
'''


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("graphapp")
    (root / "workflows").mkdir()
    (root / "workflows" / "graphs.py").write_text(textwrap.dedent(APP))
    yield str(root)
    # leave no trace for the apps other tests load (`load_app` puts its folder on the path)
    while str(root) in sys.path:
        sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "workflows" or m.startswith("workflows.")]:
        del sys.modules[name]


def module(app: str) -> Any:
    load_app(app)
    return importlib.import_module("workflows.graphs")


def test_each_node_is_a_method_of_the_tools_agent(app: str) -> None:
    loaded = load_app(app)
    assert {"fan", "mapreduce", "counter", "chat", "failing", "asking"} <= set(loaded.workflows)
    tools = loaded.agents["tools"]
    assert {"fan__w0", "fan__w5", "mapreduce__square", "mapreduce__router", "chat__echo"} \
        <= set(tools.methods)
    step = tools.methods["mapreduce__square"]
    assert not step.tool and step.idempotent  # a step of a graph, run again by a replay
    assert tools.methods["chat__echo"].is_async  # an async node: a coroutine on the loop
    assert not tools.methods["mapreduce__square"].is_async  # a plain one: a worker thread


async def test_a_super_step_numbers_its_futures_the_same_on_every_run(app: str) -> None:
    runs = [await run_local(app, "fan", {}) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2], runs
    seen = runs[0]["seen"]
    assert sorted(s.split("@")[1] for s in seen) == ["1", "2", "3", "4", "5", "6"]
    assert sorted(s.split("@")[0] for s in seen) == [f"w{i}" for i in range(6)]


async def test_send_and_command_run_as_in_langgraph(app: str) -> None:
    graph = module(app).mapreduce_graph
    for xs in ([1, 2, 3], []):
        ours = await run_local(app, "mapreduce", {"xs": xs})
        assert ours == to_json(await graph.ainvoke({"xs": xs}))
    assert (await run_local(app, "mapreduce", {"xs": [3, 4]}))["total"] == 25


async def test_a_pydantic_state_reaches_the_node_as_its_model(app: str) -> None:
    graph = module(app).counter_graph
    ours = await run_local(app, "counter", {"text": "four", "count": 1})
    assert ours == to_json(await graph.ainvoke({"text": "four", "count": 1})) == {
        "text": "four", "count": 5}


async def test_messages_travel_as_messages(app: str) -> None:
    ours = await run_local(app, "chat", {"messages": [{"role": "user", "content": "hi"}]})
    theirs = to_json(await module(app).chat_graph.ainvoke(
        {"messages": [{"role": "user", "content": "hi"}]}))
    kinds = [(m["kwargs"]["type"], m["kwargs"]["content"]) for m in ours["messages"]]
    assert kinds == [(m["kwargs"]["type"], m["kwargs"]["content"]) for m in theirs["messages"]]
    assert kinds == [("human", "hi"), ("ai", "echo: hi (human)")]


async def test_a_failing_node_fails_the_run(app: str) -> None:
    with pytest.raises(AgentError, match="ValueError: no good: 3"):
        await run_local(app, "failing", {"x": 3})


async def test_an_interrupt_cannot_wait_in_local_mode(app: str) -> None:
    with pytest.raises(InvalidInput, match="interrupted at ask: local mode has no signals"):
        await run_local(app, "asking", {"x": 1})


def test_what_is_refused_at_registration() -> None:
    builder: StateGraph[Any] = StateGraph(dict)  # type: ignore[type-var]
    builder.add_node("a", lambda s: s)
    builder.add_edge(START, "a")
    with pytest.raises(TypeError, match="compiled StateGraph"):
        workflow(builder, name="x")
    with pytest.raises(ValueError, match="interrupt_before"):
        workflow(builder.compile(interrupt_before=["a"]), name="x")
    with pytest.raises(ValueError, match="agent name"):
        workflow(builder.compile(), name="_private")
    assert workflow(builder.compile(), name="ok").methods == {"a": "ok__a"}


def test_method_names_are_tool_names() -> None:
    assert method_name("support", "draft") == "support__draft"
    odd = method_name("support", "write a draft!")
    assert odd.startswith("support__write_a_draft__") and len(odd) <= 64
    assert odd != method_name("support", "write a draft?")
    assert len(method_name("w" * 60, "n" * 60)) == 64


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(BaseModel):
    name: str


def test_state_travels_as_json() -> None:
    msgs = [HumanMessage("hi", id="1"), AIMessage("yo", id="2")]
    sent = to_json({"messages": msgs, "p": Point(1, 2), "m": Model(name="n"), "t": (1, 2)})
    assert sent["p"] == {"x": 1, "y": 2} and sent["m"] == {"name": "n"} and sent["t"] == [1, 2]
    back = from_json(sent)
    assert back["messages"] == msgs
    with pytest.raises(InvalidInput, match=r"state\.s: a set cannot travel"):
        to_json({"s": {1}})
    with pytest.raises(InvalidInput, match="keys must be strings"):
        to_json({1: 2})
    # only messages are revived: a run's input cannot name other LangChain objects
    model = {"lc": 1, "type": "constructor", "kwargs": {"base_url": "http://evil"},
             "id": ["langchain", "chat_models", "openai", "ChatOpenAI"]}
    with pytest.raises(InvalidInput, match="only messages are"):
        from_json({"llm": model})


def test_what_a_node_returns_travels_back() -> None:
    command = Command(update={"a": [AIMessage("x", id="3")]},
                      goto=[Send("n", {"k": Point(1, 2)}), "m"])
    back = decode_output(encode_output(command))
    assert isinstance(back, Command)
    assert back.update == {"a": [AIMessage("x", id="3")]}
    assert back.goto == [Send("n", {"k": {"x": 1, "y": 2}}), "m"]
    assert decode_output(encode_output({"a": 1})) == {"a": 1}
    assert decode_output(encode_output(None)) is None
    assert encode_output(Model(name="n")) == {"update": {"name": "n"}}
    with pytest.raises(InvalidInput, match=r"Command\(graph"):
        encode_output(Command(graph=Command.PARENT, goto="x"))


def test_graph_state_from_events() -> None:
    def ev(mode: str, **body: Any) -> dict[str, Any]:
        return {"event": "graph", "mode": mode, **body}

    events = [ev("checkpoint", step=0, next=["a"]), ev("values", step=1, data={"x": 1}),
              ev("checkpoint", step=1, next=["ask"]),
              ev("interrupt", signal="interrupt-2", node="ask", step=2, future="2", value="?"),
              {"event": "waiting", "signal": "interrupt-2"}]
    state = graph_state(events)
    assert state == {"values": {"x": 1}, "step": 1, "next": ["ask"], "interrupts": [
        {"signal": "interrupt-2", "node": "ask", "step": 2, "future": "2", "value": "?"}]}
    assert graph_state([*events, {"event": "signalled", "signal": "interrupt-2"}])[
        "interrupts"] == []

