"""A customer-support graph written with LangGraph, as it would be for LangGraph alone: it
classifies a ticket, answers questions directly, and drafts refunds, which a human approves
(`interrupt()`) before they are issued. The last line makes it a Nalar workflow: each node
runs as a future on an agent host (its LLM calls on that host's engine), and the approval is
a Nalar signal: the run shows `waiting` and holds no worker (docs/langgraph.md)."""

from __future__ import annotations

from typing import Any, TypedDict

import nalar
import nalar.langgraph
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

REFUND_WORDS = ("refund", "money back", "charged twice", "broken")


class Ticket(TypedDict, total=False):
    customer: str
    message: str
    kind: str  # "refund" or "question"
    reply: str
    refund: dict[str, Any]
    approved: bool
    outcome: str


def classify(state: Ticket) -> dict[str, Any]:
    """Refund requests go to a person; everything else is answered."""
    text = state["message"].lower()
    return {"kind": "refund" if any(w in text for w in REFUND_WORDS) else "question"}


def answer(state: Ticket) -> dict[str, Any]:
    reply = nalar.llm.chat([{"role": "system", "content": "You are a helpful support agent."},
                            {"role": "user", "content": state["message"]}], max_tokens=48)
    return {"reply": reply.text, "outcome": "answered"}


def draft_refund(state: Ticket) -> dict[str, Any]:
    note = nalar.llm.chat([{"role": "user", "content": "Write a short refund note for: "
                            + state["message"]}], max_tokens=32)
    return {"refund": {"customer": state["customer"], "amount": 25, "note": note.text}}


def approve(state: Ticket) -> dict[str, Any]:
    """A person says yes or no: the run waits for the signal the interrupt names."""
    decision = interrupt({"question": "Issue this refund?", "refund": state["refund"]})
    ok = decision.get("approve") if isinstance(decision, dict) else bool(decision)
    return {"approved": bool(ok)}


def issue_refund(state: Ticket) -> dict[str, Any]:
    return {"outcome": f"refunded {state['refund']['amount']} to {state['customer']}"}


def decline(state: Ticket) -> dict[str, Any]:
    return {"outcome": "refund declined"}


builder = StateGraph(Ticket)
for name, fn in (("classify", classify), ("answer", answer), ("draft_refund", draft_refund),
                 ("approve", approve), ("issue_refund", issue_refund), ("decline", decline)):
    builder.add_node(name, fn)
builder.add_edge(START, "classify")
builder.add_conditional_edges("classify", lambda s: "draft_refund" if s["kind"] == "refund"
                              else "answer", ["draft_refund", "answer"])
builder.add_edge("draft_refund", "approve")
builder.add_conditional_edges("approve", lambda s: "issue_refund" if s["approved"]
                              else "decline", ["issue_refund", "decline"])
for last in ("answer", "issue_refund", "decline"):
    builder.add_edge(last, END)
graph = builder.compile()

support = nalar.langgraph.workflow(graph, name="support")
