"""Workflows of the guardrails test app."""

from __future__ import annotations

import time
from typing import Any

import nalar
from agents.writer import Writer


@nalar.workflow
def spend(calls: int = 3, requests: int = 1, max_tokens: int = 8,
          nap_s: float = 0.0) -> dict[str, Any]:
    """`calls` Writer calls one after another (each `requests` LLM requests), after a nap; a
    guardrail that stops one ends the loop, and the result says how far it got."""
    time.sleep(nap_s)
    writer = nalar.stub(Writer)
    done: list[dict[str, Any]] = []
    try:
        for i in range(calls):
            done.append(writer.write(f"topic {i}", requests, max_tokens).value(timeout=60))
    except nalar.GuardrailExceeded as exc:
        return {"done": done, "stopped": exc.details}
    return {"done": done, "stopped": None}
