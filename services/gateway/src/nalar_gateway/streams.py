"""Live event streams (`GET /v1/runs/{id}/events`): how many a caller and the gateway may hold
open, where a reconnecting client resumes, and the SSE response that holds its slot for
exactly as long as it streams."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any, ClassVar

from nalar_common.auth import Principal
from nalar_common.errors import InvalidInput, TerminalError
from nalar_common.logging import get_logger
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

log = get_logger(__name__)

PING = b": ping\n\n"  # an SSE comment: clients ignore it, proxies and dead sockets notice it
_EVENT_ID = re.compile(r"^[0-9]{1,19}\Z")
_MAX_SEQ = 2**63 - 1

Event = dict[str, Any]


class TooManyStreams(TerminalError):
    """The caller (`details.scope` "principal") or the gateway as a whole ("total") holds as
    many live event streams as allowed (`details.limit`); answered before any stream starts,
    with a `Retry-After`."""

    code = "too_many_streams"
    http_status = 429
    retry_after_s: ClassVar[int] = 5  # a hint: a slot frees whenever some stream ends


class Slot:
    """One open stream's place in its `StreamSlots`, given back exactly once: on leaving
    `async with`, or by `release`."""

    def __init__(self, slots: StreamSlots, key: tuple[str, str, str]) -> None:
        self._slots, self._key, self._held = slots, key, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._give_back(self._key)

    async def __aenter__(self) -> Slot:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()  # no await: a cancelled stream gives its slot back all the same


class StreamSlots:
    """Counts the live streams of each principal (tenant, name and how it authenticated) and
    of the gateway; `take` one before the response starts, so a refusal is a plain 429."""

    def __init__(self, per_principal: int, total: int) -> None:
        self.per_principal, self.total = per_principal, total
        self._open: Counter[tuple[str, str, str]] = Counter()

    def take(self, who: Principal) -> Slot:
        key = (who.tenant, who.name, who.via)
        for scope, limit, held in (("principal", self.per_principal, self._open[key]),
                                   ("total", self.total, self.held())):
            if held >= limit:
                log.info("stream.refused", principal=who.name, tenant=who.tenant,
                         scope=scope, limit=limit)
                raise TooManyStreams(
                    f"{limit} live event streams are open "
                    f"{'for this caller' if scope == 'principal' else 'on this gateway'}, "
                    "the most allowed: close one, or retry later",
                    details={"limit": limit, "scope": scope})
        self._open[key] += 1
        return Slot(self, key)

    def held(self, who: Principal | None = None) -> int:
        """Open streams: `who`'s, or all of them."""
        if who is None:
            return self._open.total()
        return self._open[(who.tenant, who.name, who.via)]

    def _give_back(self, key: tuple[str, str, str]) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]  # one entry per caller with a stream open, no more


def resume_after(last_event_id: str | None, after: int | None) -> int:
    """The stream sequence a stream starts after: the `Last-Event-ID` a reconnecting
    EventSource sends (it wins: it is newer than the URL), else `?after=`, else 0 (all)."""
    if last_event_id is None or not last_event_id.strip():
        return after or 0
    raw = last_event_id.strip()
    if not _EVENT_ID.match(raw) or int(raw) > _MAX_SEQ:
        raise InvalidInput("Last-Event-ID must be an event's id (a non-negative integer)",
                           details={"errors": [{"field": "Last-Event-ID",
                                                "message": "a non-negative integer"}]})
    return int(raw)


def sse_event(ev: Event) -> bytes:
    data = json.dumps(ev, default=str)
    return f"id: {ev['seq']}\nevent: {ev['event']}\ndata: {data}\n\n".encode()


class EventStream(StreamingResponse):
    """Server-sent events from `events` (None: nothing new, a ping goes out), each shown as
    `view` makes it. The slot is held from the first byte to the last; when the stream ends,
    the client goes away (Starlette cancels the sender) or a send fails, `events` is closed
    then and there, and with it the JetStream consumer behind it."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[Event | None, None], slot: Slot,
                 view: Callable[[Event], Event]) -> None:
        self.events, self.slot, self.view = events, slot, view
        self._body = self._lines()
        super().__init__(self._body, headers={"Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})

    async def _lines(self) -> AsyncGenerator[bytes, None]:
        async for ev in self.events:
            yield PING if ev is None else sse_event(self.view(ev))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.slot:
            try:
                await super().__call__(scope, receive, send)
            finally:
                await self._body.aclose()
                await self.events.aclose()
