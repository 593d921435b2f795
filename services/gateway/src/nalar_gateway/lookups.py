"""Batch direct gets (the last message of each of a few subjects) over one reply subscription
held by the gateway, where `Bus.multi_last` subscribes and unsubscribes an inbox per read: a
run's view is read on every `?wait` answer and every `GET /v1/runs/{id}`. A read the server
answers with more than one batch holds (413) goes to `Bus.multi_last`, which knows what to do.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable
from typing import Any

from nalar_common.bus import MULTI_LAST_BATCH, Bus, StoredMsg
from nats.aio.msg import Msg


class TooMany(Exception):
    """The server would not answer the read in one batch."""


class Lookups:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._prefix = ""
        self._tokens = itertools.count()
        self._replies: dict[str, asyncio.Queue[Msg]] = {}
        self._sub: Any = None

    async def start(self) -> None:
        self._prefix = self.bus.nc.new_inbox()
        self._sub = await self.bus.nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        queue = self._replies.get(msg.subject)
        if queue is not None:  # else a read that gave up already
            queue.put_nowait(msg)

    async def multi_last(self, stream: str, subjects: Iterable[str],
                         timeout: float = 5.0) -> dict[str, StoredMsg]:
        """As `Bus.multi_last`: the last message per subject (wildcards allowed)."""
        subjects = list(subjects)
        if not subjects:
            return {}
        if self._sub is None or len(subjects) > MULTI_LAST_BATCH:
            return await self.bus.multi_last(stream, subjects, timeout)
        try:
            return await self._read(stream, subjects, timeout)
        except TooMany:
            return await self.bus.multi_last(stream, subjects, timeout)

    async def _read(self, stream: str, subjects: list[str],
                    timeout: float) -> dict[str, StoredMsg]:
        reply = f"{self._prefix}.{next(self._tokens)}"
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._replies[reply] = queue
        found: dict[str, StoredMsg] = {}
        try:
            await self.bus.nc.publish(
                f"$JS.API.DIRECT.GET.{stream}",
                json.dumps({"multi_last": subjects, "batch": 100_000}).encode(), reply=reply)
            async with asyncio.timeout(timeout):
                while True:
                    msg = await queue.get()
                    headers = dict(msg.headers or {})
                    if headers.get("Status") or "Nats-Subject" not in headers:
                        if headers.get("Status") == "413":
                            raise TooMany(subjects[0])
                        return found  # 204 end of batch, 404 nothing stored
                    found[headers["Nats-Subject"]] = StoredMsg(
                        subject=headers["Nats-Subject"], data=msg.data, headers=headers,
                        seq=int(headers.get("Nats-Sequence", "0")),
                        timestamp=headers.get("Nats-Time-Stamp"))
        finally:
            del self._replies[reply]
