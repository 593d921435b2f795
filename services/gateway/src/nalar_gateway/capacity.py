"""Admission by stream fill: no new run while NALAR_CALLS or NALAR_RUNS is above its high-water
mark (`NALAR_NATS_STREAMS_HIGH_WATER` of its `max_bytes`). Both streams refuse publishes past
their limit (discard `new`: nothing stored is dropped), so the room above the mark is what the
runs already accepted need to finish; a new run gets 503 `unavailable` instead, with the
stream and its fill in the details. Stream info is read at most once a second per gateway
(the gateway holds one `Capacity`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from nalar_common.bus import Bus
from nalar_common.errors import Unavailable
from nalar_common.logging import get_logger

log = get_logger(__name__)

CACHE_S = 1.0
STALE_S = 10.0  # a reading this old still serves while NATS does not answer


@dataclass(frozen=True, slots=True)
class Fill:
    stream: str
    bytes: int
    max_bytes: int  # -1: no limit

    @property
    def ratio(self) -> float:
        return self.bytes / self.max_bytes if self.max_bytes > 0 else 0.0


class Capacity:
    """The fill of the streams a new run writes to, cached for `CACHE_S`."""

    def __init__(self, bus: Bus, cache_s: float = CACHE_S) -> None:
        self.bus, self.cache_s = bus, cache_s
        self.high_water = bus.settings.streams_high_water
        self._fills: list[Fill] = []
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        """Unavailable (503) while a stream is above its high-water mark."""
        for fill in await self.fills():
            if fill.max_bytes > 0 and fill.ratio >= self.high_water:
                log.warning("run.refused_stream_full", stream=fill.stream, bytes=fill.bytes,
                            max_bytes=fill.max_bytes)
                raise Unavailable(
                    f"stream {fill.stream} is {fill.ratio:.0%} full (high-water mark "
                    f"{self.high_water:.0%} of {fill.max_bytes} bytes): no new runs until "
                    "running ones finish or its limit is raised; retry later",
                    details={"stream": fill.stream, "bytes": fill.bytes,
                             "max_bytes": fill.max_bytes, "fill": round(fill.ratio, 4),
                             "high_water": self.high_water})

    async def fills(self) -> list[Fill]:
        if time.monotonic() - self._read_at < self.cache_s:
            return self._fills
        async with self._lock:  # one reader refreshes, the others wait for it
            if time.monotonic() - self._read_at < self.cache_s:
                return self._fills
            try:
                self._fills = [await self._read(s) for s in (self.bus.names.calls_stream,
                                                             self.bus.names.runs_stream)]
            except Exception as exc:
                if time.monotonic() - self._read_at > STALE_S:
                    raise Unavailable(f"cannot read the streams' fill: {exc}",
                                      details={"type": type(exc).__name__}) from exc
                log.warning("capacity.read_failed", error=str(exc))
                return self._fills
            self._read_at = time.monotonic()
            return self._fills

    async def _read(self, stream: str) -> Fill:
        info = await self.bus.js.stream_info(stream)
        return Fill(stream, int(info.state.bytes or 0), int(info.config.max_bytes or -1))
