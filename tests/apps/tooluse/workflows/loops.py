"""Agent loops of the tool-use test app (tests/test_agentloop_e2e.py): each LLM turn runs on
the built-in `llm` agent, each tool call on the agent that owns the tool.

The hosts' simulated engine is scripted per scenario by a key in the user's message
(`NALAR_LLM_SIM_PARAMS={"script": {...}}`), or decides by its seed."""

from __future__ import annotations

import time
from typing import Any

import nalar
from agents.calc import Calculator, executed, executions_file
from pydantic import BaseModel


@nalar.tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    executed(f"get_weather {city}")
    return f"sunny in {city}"


def slow_echo(text: str, seconds: float = 0.3) -> str:
    """Say `text` back after `seconds`."""
    executed(f"slow_echo {text}")
    time.sleep(seconds)
    return text


def wait_for_gate(name: str) -> str:
    """Return once the test opens the gate file `<name>.open` (a step a test kills a host in)."""
    executed(f"wait_for_gate {name}")
    gate = executions_file().parent / f"{name}.open"
    while not gate.exists():  # the workload: a long tool call
        time.sleep(0.02)
    return f"{name} open"


class Verdict(BaseModel):
    city: str
    good: bool


weather = nalar.AgentLoop(
    "weather", instructions="Answer questions about the weather; use the tools.",
    tools=[get_weather, Calculator.add, slow_echo], max_turns=4)

researcher = nalar.AgentLoop(
    "researcher", instructions="Research with your tools; ask the weather agent about weather.",
    tools=[weather, Calculator.note, wait_for_gate, get_weather], max_turns=6)

# "required" on every turn (not only the first): the model never stops calling tools
runaway = nalar.AgentLoop("runaway", tools=[get_weather], tool_choice="required",
                          max_turns=12, reset_tool_choice=False)

short = nalar.AgentLoop("short", tools=[get_weather], tool_choice="required", max_turns=2,
                        reset_tool_choice=False)

# "required" once: then the model may answer
forced_once = nalar.AgentLoop("forced_once", tools=[get_weather], tool_choice="required",
                              max_turns=4)

judge = nalar.AgentLoop("judge", instructions="Judge the weather.", tools=[get_weather],
                        output_type=Verdict, max_turns=3)


panel = nalar.AgentLoop("panel", instructions="Ask the judge.", tools=[judge], max_turns=3)


@nalar.workflow
async def transcript(loop: str, question: str) -> dict[str, Any]:
    """Run one of the loops and return what its model saw, with the outcome."""
    messages: list[dict[str, Any]] = []
    chosen = {"weather": weather, "researcher": researcher, "short": short,
              "panel": panel}[loop]
    try:
        output = await chosen.run(question, transcript=messages)
    except nalar.NalarError as exc:
        return {"error": exc.error_code, "messages": messages}
    return {"output": output, "messages": messages}
