"""LLM answers recorded in a run's journal (`llm` events), served again when a replay re-runs
a call and asks the same thing in the same place: the n-th request of the same future, with
the same digest (messages or prompt, `max_tokens`, temperature). Anything else asks the
engine: the call's inputs changed, so the answer may too."""

from __future__ import annotations

from typing import Any

from nalar_common.digest import digest
from nalar_common.journal import Event, decode

from nalar.engines.base import Completion, LLMRequest, ToolCall


def request_digest(request: LLMRequest) -> str:
    asked: list[Any] = [request.messages, request.prompt, request.max_tokens,
                        request.temperature]
    if request.tools:  # (a request without tools keeps the digest it always had)
        asked += [request.tools, request.tool_choice]
    return digest(asked)


class RecordedLLM:
    def __init__(self, bus: Any, run: str, future: str) -> None:
        self.bus, self.run, self.future = bus, run, future
        self._records: dict[int, dict[str, Any]] | None = None

    async def find(self, n: int, want: str) -> Completion | None:
        """The recorded answer to the n-th request if it was asked with digest `want`."""
        if self._records is None:
            names = self.bus.names
            msgs = await self.bus.read_all(names.runs_stream, names.run_event(self.run, Event.LLM))
            self._records = {}
            for m in msgs:
                ev = decode(m)
                if str(ev.get("future")) == self.future:
                    self._records[int(ev.get("n") or 0)] = ev
        rec = self._records.get(n)
        if rec is None or rec.get("digest") != want or rec.get("text") is None:
            return None
        return Completion(text=str(rec["text"]), prompt_tokens=int(rec.get("prompt_tokens") or 0),
                          completion_tokens=int(rec.get("completion_tokens") or 0),
                          cached_tokens=int(rec.get("cached_tokens") or 0),
                          model=str(rec.get("model") or ""), engine="replay",
                          tool_calls=tuple(ToolCall.from_dict(t)
                                           for t in rec.get("tool_calls") or ()),
                          finish_reason=str(rec.get("finish_reason") or ""))
