"""A research assistant written with the OpenAI Agents SDK, as it would be for the SDK alone:
a triage agent hands off to a web researcher (a search tool) or to a quant (a calculator, and
Python run in Nalar's sandbox). The last line makes it a Nalar workflow: every model call
and every tool call becomes a future (docs/openai-agents.md).

(No `agents/` directory in this app: the SDK's own package is named `agents`.)"""

from __future__ import annotations

import ast
import operator

import nalar
from agents import Agent, function_tool
from nalar.openai_agents import workflow

# a few pages standing in for the web (the example makes no network requests)
PAGES = {
    "nalar": "Nalar serves agent workflows: every agent and tool call is a durable future.",
    "futures": "A future is a value that will exist: here, a call's result on NATS JetStream.",
    "vllm": "vLLM is an inference engine with continuous batching and prefix caching.",
    "inflation": "Inflation is the rate at which the general level of prices rises.",
}

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg}


@function_tool
def web_search(query: str) -> list[str]:
    """Search the web; the pages whose topic appears in the query."""
    words = query.lower().split()
    return [text for topic, text in PAGES.items() if any(topic in w for w in words)] or [
        f"no page mentions {query!r}"]


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_eval(node.left), _eval(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_eval(node.operand)))
    raise ValueError("only numbers and + - * / ** are allowed")


@function_tool
def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression such as `2 * (3 + 4) ** 2`."""
    return _eval(ast.parse(expression, mode="eval").body)


@function_tool
async def run_python(code: str) -> str:
    """Run Python code in a sandbox (no network, a scratch directory, limits on time and
    memory) and return what it printed."""
    return await nalar.sandbox.python(code)


researcher = Agent(name="Web researcher",
                   instructions="Answer with facts from web_search; cite what you found.",
                   tools=[web_search])

quant = Agent(name="Quant",
              instructions="Answer numeric questions: use calculator for arithmetic and "
                           "run_python for anything longer. Show the number.",
              tools=[calculator, run_python])

triage = Agent(name="Triage",
               instructions="Hand numeric questions to the Quant and everything else to the "
                            "Web researcher.",
               handoffs=[researcher, quant])

research = workflow(triage, name="research")
