"""The agent-loop benchmark's app (bench/agentloop.py): a loop whose one tool echoes, its
simulated engine scripted so that every turn costs about the same engine time."""

from __future__ import annotations

import nalar


@nalar.tool
def echo(text: str) -> str:
    """Say the text back."""
    return text


bench_loop = nalar.AgentLoop("bench_loop", tools=[echo], max_turns=64, max_tokens=64)
