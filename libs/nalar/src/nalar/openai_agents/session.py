"""An OpenAI Agents SDK `Session` that is the Nalar session: the conversation items live in
the built-in `conversations` agent's managed state (Redis, per session), and each read or
write is a future, so runs that share a `session_id` continue one conversation wherever they
run, and a re-executed driver gets the same history from the futures stream."""

from __future__ import annotations

from typing import Any

from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings
from pydantic_core import to_jsonable_python

from nalar.context import current
from nalar.loop.builtin import CONVERSATIONS_AGENT
from nalar.stub import stub


class NalarSession(SessionABC):
    """The conversation of the current run's session (`POST /v1/workflows/.../runs` with
    `"session_id"`; a run without one has a session of its own)."""

    def __init__(self, settings: SessionSettings | None = None) -> None:
        self.session_id = current().session
        self.session_settings = settings

    async def get_items(self, limit: int | None = None) -> list[Any]:
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        items = await stub(CONVERSATIONS_AGENT).items(limit)
        return list(items)

    async def add_items(self, items: list[Any]) -> None:
        if items:
            await stub(CONVERSATIONS_AGENT).add(to_jsonable_python(items, fallback=str))

    async def pop_item(self) -> Any:
        return await stub(CONVERSATIONS_AGENT).pop()

    async def clear_session(self) -> None:
        await stub(CONVERSATIONS_AGENT).clear()
