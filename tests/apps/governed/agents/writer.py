"""Agent of the guardrails test app: LLM requests on the host's (simulated) engine."""

from __future__ import annotations

from typing import Any

import nalar


@nalar.agent(concurrency=4)
class Writer:
    async def write(self, topic: str, requests: int = 1, max_tokens: int = 8) -> dict[str, Any]:
        """`requests` chat completions one after another; what each used."""
        used = []
        for i in range(requests):
            c = await nalar.llm.achat([{"role": "user", "content": f"{topic} part {i}"}],
                                      max_tokens=max_tokens)
            used.append({"prompt_tokens": c.prompt_tokens,
                         "completion_tokens": c.completion_tokens})
        return {"topic": topic, "used": used}
