"""LangGraph graphs of the graphs test app (tests/test_langgraph_e2e.py), registered with
`nalar.langgraph.workflow` as they are: every node runs as a future on a host, its LLM calls
(`nalar.llm`) on that host's simulated engine, scripted per scenario by a key in the prompt
(`NALAR_LLM_SIM_PARAMS={"script": {...}}`).

Nodes write one line per execution to `GRAPHS_DIR/executions.log` (`GRAPHS_DIR` set by the
tests), so a test counts how often each ran."""

from __future__ import annotations

import operator
import os
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import nalar
import nalar.langgraph
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


def folder() -> Path:
    return Path(os.environ.get("GRAPHS_DIR", "/tmp"))


def executed(node: str) -> None:
    """One line per execution: the node, the host it ran on, the run."""
    host = os.environ.get("NALAR_AGENT_HOST_HOST_ID", "-")
    with open(folder() / "executions.log", "a") as f:
        f.write(f"{node} {host} {nalar.current_run_id()}\n")


def wait_for(name: str, timeout: float = 60.0) -> None:
    """Until the file `<name>` exists in GRAPHS_DIR (what a test or another node makes)."""
    gate, give_up = folder() / name, time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{gate} did not appear within {timeout}s")
        time.sleep(0.02)


# -- research: a conditional edge, then two nodes in one super-step ---------------------------
class Research(TypedDict, total=False):
    topic: str
    plan: str
    notes: Annotated[list[str], operator.add]
    report: str


def plan(state: Research) -> dict[str, Any]:
    executed("plan")
    get_stream_writer()({"progress": "planning", "topic": state["topic"]})
    answer = nalar.llm.chat([{"role": "user", "content": f"plan: {state['topic']}"}])
    return {"plan": answer.text}


def route(state: Research) -> list[str] | str:
    """Both sides at once, unless the topic says it is quick."""
    return "write" if state["topic"].startswith("quick") else ["pros", "cons"]


def _side(name: str, other: str, state: Research) -> dict[str, Any]:
    executed(name)
    (folder() / f"{nalar.current_run_id()}.{name}").touch()
    wait_for(f"{nalar.current_run_id()}.{other}")  # both run at once, or neither finishes
    answer = nalar.llm.chat([{"role": "user", "content": f"{name}: {state['plan']}"}])
    return {"notes": [f"{name}: {answer.text}"]}


def pros(state: Research) -> dict[str, Any]:
    return _side("pros", "cons", state)


def cons(state: Research) -> dict[str, Any]:
    return _side("cons", "pros", state)


async def write(state: Research) -> dict[str, Any]:
    executed("write")
    answer = await nalar.llm.achat([{"role": "user", "content": f"write: {state['topic']}"}])
    return {"report": answer.text}


builder = StateGraph(Research)
builder.add_node("plan", plan)
builder.add_node("pros", pros)
builder.add_node("cons", cons)
builder.add_node("write", write)
builder.add_edge(START, "plan")
builder.add_conditional_edges("plan", route, ["pros", "cons", "write"])
builder.add_edge(["pros", "cons"], "write")
builder.add_edge("write", END)
research_graph = builder.compile()

research = nalar.langgraph.workflow(research_graph, name="research")


# -- approval: two nodes at once, then a human answers an interrupt() -------------------------
class Approval(TypedDict, total=False):
    amount: int
    draft: str
    risk: str
    decision: Any
    outcome: str


def draft(state: Approval) -> dict[str, Any]:
    executed("draft")
    return {"draft": f"pay {state['amount']}"}


def check(state: Approval) -> dict[str, Any]:
    executed("check")
    return {"risk": "low" if state["amount"] < 100 else "high"}


def approve(state: Approval) -> dict[str, Any]:
    executed("approve")
    decision = interrupt({"question": "approve?", "draft": state["draft"],
                          "risk": state["risk"]})
    return {"decision": decision}


def decide(state: Approval) -> str:
    ok = isinstance(state.get("decision"), dict) and state["decision"].get("ok")
    return "pay" if ok else END


def pay(state: Approval) -> dict[str, Any]:
    executed("pay")
    return {"outcome": f"paid {state['amount']} ({state['decision'].get('by')})"}


approval_builder = StateGraph(Approval)
for name, fn in (("draft", draft), ("check", check), ("approve", approve), ("pay", pay)):
    approval_builder.add_node(name, fn)
approval_builder.add_edge(START, "draft")
approval_builder.add_edge(START, "check")
approval_builder.add_edge(["draft", "check"], "approve")
approval_builder.add_conditional_edges("approve", decide, ["pay", END])
approval_builder.add_edge("pay", END)

approval = nalar.langgraph.workflow(approval_builder.compile(), name="approval")


# -- durable: a node that waits on a gate file (a test kills a host meanwhile) ----------------
class Steps(TypedDict, total=False):
    gate: str
    done: Annotated[list[str], operator.add]


def one(state: Steps) -> dict[str, Any]:
    executed("one")
    return {"done": ["one"]}


def gate(state: Steps) -> dict[str, Any]:
    executed("gate")
    wait_for(state["gate"], timeout=120)
    return {"done": ["gate"]}


def two(state: Steps) -> dict[str, Any]:
    executed("two")
    return {"done": ["two"]}


steps_builder = StateGraph(Steps)
for name, fn in (("one", one), ("gate", gate), ("two", two)):
    steps_builder.add_node(name, fn)
steps_builder.add_edge(START, "one")
steps_builder.add_edge("one", "gate")
steps_builder.add_edge("gate", "two")
steps_builder.add_edge("two", END)

durable = nalar.langgraph.workflow(steps_builder.compile(), name="durable")


# -- review: two nodes of one super-step interrupt, one of them twice ------------------------
class Review(TypedDict, total=False):
    doc: str
    answers: Annotated[list[str], operator.add]


def legal(state: Review) -> dict[str, Any]:
    executed("legal")
    first = interrupt(f"legal ok? {state['doc']}")
    second = interrupt("legal sure?")
    return {"answers": [f"legal: {first}, {second}"]}


def money(state: Review) -> dict[str, Any]:
    executed("money")
    return {"answers": [f"money: {interrupt('money ok?')}"]}


review_builder = StateGraph(Review)
review_builder.add_node("legal", legal)
review_builder.add_node("money", money)
review_builder.add_edge(START, "legal")
review_builder.add_edge(START, "money")
review_builder.add_edge(["legal", "money"], END)

review = nalar.langgraph.workflow(review_builder.compile(), name="review")
