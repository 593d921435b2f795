"""Agent of the LLM test app: one chat completion on the host's engine (tests/test_vllm_e2e.py
points the hosts at a real vLLM server)."""

from __future__ import annotations

from typing import Any

import nalar


@nalar.agent(concurrency=4)
class Asker:
    def ask(self, question: str, max_tokens: int = 16) -> dict[str, Any]:
        c = nalar.llm.chat([{"role": "user", "content": question}], max_tokens=max_tokens,
                           temperature=0.0)
        return {"text": c.text, "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens, "cached_tokens": c.cached_tokens,
                "timings": c.timings, "model": c.model, "engine": c.engine}

    async def aask(self, question: str, max_tokens: int = 16) -> dict[str, Any]:
        c = await nalar.llm.achat([{"role": "user", "content": question}],
                                  max_tokens=max_tokens, temperature=0.0)
        return {"text": c.text, "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens, "cached_tokens": c.cached_tokens,
                "timings": c.timings, "model": c.model, "engine": c.engine}
