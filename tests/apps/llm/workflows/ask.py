"""Workflows of the LLM test app."""

from __future__ import annotations

from typing import Any

import nalar
from agents.asker import Asker


@nalar.workflow
def ask(question: str = "What is the capital of France?", max_tokens: int = 16) -> dict[str, Any]:
    """One agent call, one chat completion (sync agent method, blocking `nalar.llm.chat`)."""
    return nalar.stub(Asker).ask(question, max_tokens).value(timeout=120)


@nalar.workflow
async def ask_twice(question: str, max_tokens: int = 8) -> list[dict[str, Any]]:
    """The same question twice in one session, one after the other (async `achat`): the
    second request finds the first one's prompt in the engine's prefix cache."""
    a = nalar.stub(Asker)
    first = await a.aask(question, max_tokens)
    second = await a.aask(question, max_tokens)
    return [first, second]
