"""Agent loops of the LLM test app on a real model (tests/test_vllm_e2e.py): SmolLM2-135M
proposes tool calls whose arguments need not fit; the loop checks them."""

from __future__ import annotations

from typing import Any

import nalar


@nalar.tool
def get_weather(city: str) -> str:
    """Get the current weather in a given city."""
    return f"It is sunny in {city}."


@nalar.tool
def get_forecast(city: str, days: int) -> str:
    """Get the weather forecast for a city for a number of days."""
    return f"{days} sunny days in {city}."


@nalar.tool
def remember(**facts: Any) -> str:
    """Remember any facts about the user's request."""
    return "remembered " + ", ".join(sorted(facts))


weather_required = nalar.AgentLoop(
    "weather_required", instructions="You are a helpful assistant with tools.",
    tools=[get_weather, remember], tool_choice="required", max_turns=3, max_tokens=48)

weather_named = nalar.AgentLoop(
    "weather_named", instructions="You are a helpful assistant with tools.",
    tools=[get_weather], tool_choice={"type": "function", "function": {"name": "get_weather"}},
    max_turns=2, max_tokens=48)


forecast_named = nalar.AgentLoop(
    "forecast_named", instructions="You are a helpful assistant with tools.",
    tools=[get_forecast],
    tool_choice={"type": "function", "function": {"name": "get_forecast"}},
    max_turns=2, max_tokens=48)


@nalar.workflow
async def tool_transcript(loop: str, question: str) -> dict[str, Any]:
    """Run a loop; return the conversation the model saw and how it ended."""
    chosen = {"required": weather_required, "named": weather_named,
              "forecast": forecast_named}[loop]
    messages: list[dict[str, Any]] = []
    try:
        output = await chosen.run(question, transcript=messages)
    except nalar.NalarError as exc:
        return {"error": exc.error_code, "messages": messages}
    return {"output": output, "messages": messages}
