"""OpenAI Agents SDK agents of the test app (tests/test_openai_agents_e2e.py), written as for
the SDK alone; one line each makes an entry agent a Nalar workflow. The hosts' simulated
engine is scripted per scenario by a key in the conversation's first user message.

(No `agents/` directory in this app: the SDK's package is named `agents`.)"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import nalar
from agents import (
    Agent,
    GuardrailFunctionOutput,
    RunContextWrapper,
    function_tool,
    input_guardrail,
    output_guardrail,
)
from nalar.openai_agents import workflow
from pydantic import BaseModel


def executed(line: str) -> None:
    """One line per tool execution (`OAI_DIR`, set by the tests), so tests count them."""
    with open(Path(os.environ.get("OAI_DIR", "/tmp")) / "executions.log", "a") as f:
        f.write(line + "\n")


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    executed(f"get_weather {city}")
    return f"sunny in {city}"


@function_tool
async def shout(text: str) -> str:
    """Say a text loudly."""
    executed(f"shout {text}")
    return text.upper() + "!"


@nalar.tool(idempotent=False)  # Nalar's hints over the SDK's tool
@function_tool
def note(text: str) -> str:
    """Write a note down (not idempotent: tests count the notes)."""
    executed(f"note {text}")
    return f"noted: {text}"


@function_tool
def wait_for_gate(name: str) -> str:
    """Return once the test opens the gate file `<name>.open` (a host dies meanwhile)."""
    executed(f"wait_for_gate {name}")
    gate = Path(os.environ.get("OAI_DIR", "/tmp")) / f"{name}.open"
    while not gate.exists():  # the workload: a long tool call
        time.sleep(0.02)
    return f"{name} open"


@function_tool
def explode(reason: str) -> str:
    """A tool that fails."""
    executed(f"explode {reason}")
    raise RuntimeError(f"boom: {reason}")


class Verdict(BaseModel):
    city: str
    good: bool


@input_guardrail(run_in_parallel=False)
def no_forbidden_words(ctx: RunContextWrapper[Any], agent: Agent[Any],
                       input: str | list[Any]) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info={"checked": "forbidden"},
                                   tripwire_triggered="forbidden" in str(input))


@output_guardrail
def no_secrets(ctx: RunContextWrapper[Any], agent: Agent[Any],
               output: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info=None, tripwire_triggered="secret" in str(output))


weather_specialist = Agent(
    name="weather_specialist", handoff_description="Knows the weather.",
    instructions="Answer weather questions with your tools.",
    tools=[get_weather, note, wait_for_gate, explode], output_guardrails=[no_secrets])

translator = Agent(name="translator", instructions="Translate to English, loudly.",
                   tools=[shout])

judge = Agent(name="judge", instructions="Judge the weather.", tools=[get_weather],
              output_type=Verdict)

triage = Agent(
    name="triage", instructions="Route the question; translate with your tool.",
    handoffs=[weather_specialist],
    tools=[translator.as_tool(tool_name="translate", tool_description="Translate a text.")],
    input_guardrails=[no_forbidden_words])

research = workflow(triage, name="research")
verdict = workflow(judge, name="verdict", max_turns=3)

chatter = Agent(name="chatter", instructions="Chat.")
chat = workflow(chatter, name="chat", session=True)  # the SDK session is the Nalar session


@nalar.workflow
async def chat_items(message: str) -> int:
    """One chat turn in the run's session: how many items the conversation has now."""
    result = await chat.run(message)
    return len(result.to_input_list())


@nalar.workflow
async def transcript(question: str) -> dict[str, Any]:
    """Run the research agent and return what its models saw (the run's items)."""
    result = await research.run(question)
    return {"output": result.final_output, "items": result.to_input_list(),
            "last_agent": result.last_agent.name}
