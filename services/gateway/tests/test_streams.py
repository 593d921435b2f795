"""Stream slots, resume points and the SSE response, without servers: a slot is held from the
first byte to the last and comes back however the stream ends, a client that goes away
included; the source of events is closed then and there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from nalar_common.auth import Principal
from nalar_common.errors import InvalidInput, NalarError, error_types
from nalar_gateway.handlers import error_response
from nalar_gateway.streams import PING, EventStream, StreamSlots, TooManyStreams, resume_after
from starlette.requests import ClientDisconnect

ANN = Principal("ann", tenant="acme")
BOB = Principal("bob", tenant="acme")


def test_slots_cap_each_caller_then_the_gateway() -> None:
    slots = StreamSlots(per_principal=2, total=3)
    held = [slots.take(ANN), slots.take(ANN)]
    with pytest.raises(TooManyStreams) as exc:
        slots.take(ANN)
    assert exc.value.details == {"limit": 2, "scope": "principal"}
    held.append(slots.take(BOB))
    with pytest.raises(TooManyStreams) as exc:
        slots.take(BOB)
    assert exc.value.details == {"limit": 3, "scope": "total"}
    # the same name by another route (an anonymous principal) is another caller
    assert slots.held(Principal("ann", tenant="acme", via="anonymous")) == 0
    held[0].release()
    held[0].release()  # once only
    assert (slots.held(ANN), slots.held()) == (1, 2)
    held.append(slots.take(ANN))
    for slot in held:
        slot.release()
    assert slots.held() == 0 and not slots._open  # no entry left per caller


def test_too_many_streams_is_a_429_with_retry_after() -> None:
    assert error_types()["too_many_streams"] is TooManyStreams
    err = TooManyStreams("full", details={"limit": 2, "scope": "principal"})
    assert type(NalarError.from_wire(err.to_wire())) is TooManyStreams
    resp = error_response(err)
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) > 0
    assert b'"too_many_streams"' in resp.body and b'"scope":"principal"' in resp.body


@pytest.mark.parametrize(("header", "after", "start"), [
    (None, None, 0), (None, 7, 7), ("12", 7, 12), (" 12 ", None, 12), ("", 7, 7),
    ("0", None, 0), (str(2**63 - 1), None, 2**63 - 1)])
def test_resume_point(header: str | None, after: int | None, start: int) -> None:
    assert resume_after(header, after) == start


@pytest.mark.parametrize("header", ["abc", "-1", "1.5", "1e3", "²", str(2**63), "9" * 20])
def test_a_resume_point_that_is_no_event_id_is_refused(header: str) -> None:
    with pytest.raises(InvalidInput):
        resume_after(header, None)


class Source:
    """Events as RunReader.events yields them, and whether it was closed."""

    def __init__(self, items: list[dict[str, Any] | None], then_wait: bool) -> None:
        self.items, self.then_wait, self.closed = items, then_wait, False
        self.waiting = asyncio.Event()

    async def events(self) -> AsyncGenerator[dict[str, Any] | None, None]:
        try:
            for item in self.items:
                yield item
            if self.then_wait:
                self.waiting.set()
                await asyncio.Event().wait()  # a run that goes quiet
        finally:
            self.closed = True


async def _serve(response: EventStream, disconnect: asyncio.Event) -> list[bytes]:
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET"}
    await response(scope, receive, send)
    return sent


async def test_a_stream_that_ends_gives_its_slot_back() -> None:
    slots = StreamSlots(1, 1)
    source = Source([{"seq": 3, "event": "created", "x": 1}, None], then_wait=False)
    response = EventStream(source.events(), slots.take(ANN), lambda ev: {**ev, "seen": True})
    sent = await _serve(response, asyncio.Event())
    assert sent[0].startswith(b'id: 3\nevent: created\ndata: {"seq": 3, "event": "created"')
    assert b'"seen": true' in sent[0] and sent[1] == PING and sent[-1] == b""
    assert slots.held() == 0 and source.closed
    assert response.headers["content-type"].startswith("text/event-stream")


async def test_a_client_that_goes_away_gives_its_slot_back() -> None:
    slots = StreamSlots(1, 1)
    source = Source([{"seq": 1, "event": "created"}], then_wait=True)
    response = EventStream(source.events(), slots.take(ANN), lambda ev: ev)
    gone = asyncio.Event()
    serving = asyncio.create_task(_serve(response, gone))
    await source.waiting.wait()
    assert slots.held() == 1 and not source.closed
    gone.set()
    sent = await asyncio.wait_for(serving, 5)
    assert len(sent) == 1  # the event, no end: the client is not there to get it
    assert slots.held() == 0 and source.closed


async def test_a_failed_send_gives_the_slot_back() -> None:
    slots = StreamSlots(1, 1)
    source = Source([{"seq": 1, "event": "created"}], then_wait=True)
    response = EventStream(source.events(), slots.take(ANN), lambda ev: ev)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("connection reset")

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "GET"}
    with pytest.raises(ClientDisconnect):
        await response(scope, receive, send)
    assert slots.held() == 0 and source.closed
