"""`GET /v1/runs/{id}/futures/{future}/value`: one future's value, streamed from the values
bucket when it is kept by reference (nalar_common.values): bytes as
`application/octet-stream`, text as `text/plain`, anything else as JSON, or as the stored
msgpack (streamed, any size) for a client that accepts `application/msgpack`."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from nalar_common.bus import Bus
from nalar_common.envelope import FutureRef, ValueRef
from nalar_common.errors import Conflict, NalarError, NotFound, PayloadTooLarge
from nalar_common.futures import FutureResult
from nalar_common.values import carried, store_for
from starlette.responses import Response, StreamingResponse

from nalar_gateway.bodies import finite

MEDIA = {"bytes": "application/octet-stream", "str": "text/plain; charset=utf-8",
         "msgpack": "application/msgpack"}
JSON_MAX_BYTES = 64 << 20
"""Largest stored msgpack value turned into JSON here (in a worker thread); a larger one is
413 unless the client accepts `application/msgpack`."""


async def future_value(bus: Bus, run: str, future: str, accept: str = "") -> Response:
    """The response for one future's value: 404 while it has none, 409 when it failed."""
    stored = await bus.direct_get_last(bus.names.futures_stream, bus.names.future(run, future),
                                       strict=True)
    if stored is None:
        raise NotFound(f"future {future!r} of run {run!r} has no result (yet)",
                       details={"run": run, "future": future})
    result = FutureResult(run, future, stored.data, stored.headers)
    try:
        value = result.value()
    except NalarError as exc:
        raise Conflict(f"future {future!r} of run {run!r} failed: {exc.error_code}: "
                       f"{exc.message}", details={"run": run, "future": future,
                                                  "code": exc.error_code}) from None
    store = store_for(bus)
    if isinstance(value, ValueRef) and (value.kind != "msgpack" or
                                        "application/msgpack" in accept):
        chunks = await store.reader(value)  # checked as it streams: a bad one is cut short
        return StreamingResponse(chunks, media_type=MEDIA.get(value.kind, MEDIA["bytes"]),
                                 headers={"Content-Length": str(value.size),
                                          "Nalar-Value-Ref": value.uri,
                                          "Digest": rfc3230(value.digest)})
    if isinstance(value, ValueRef) and value.size > JSON_MAX_BYTES:
        raise PayloadTooLarge(
            f"future {future!r} of run {run!r} is {value.size} bytes of msgpack: more than "
            f"{JSON_MAX_BYTES} are not turned into JSON; ask for it with `Accept: "
            "application/msgpack`", details={"size": value.size, "limit": JSON_MAX_BYTES})
    if carried(stored.headers):
        value = await store.resolve(value)
    if isinstance(value, bytes):
        return Response(value, media_type=MEDIA["bytes"])
    if isinstance(value, str):
        return Response(value.encode("utf-8"), media_type=MEDIA["str"])
    body = await asyncio.to_thread(_json, value)
    return Response(body, media_type="application/json")


def rfc3230(digest: str) -> str:
    """`SHA-256=<base64url>` (as the Object Store writes it) as RFC 3230 wants it: standard
    base64."""
    algo, _, b64 = digest.partition("=")
    try:
        return f"{algo}={base64.b64encode(base64.urlsafe_b64decode(b64)).decode()}"
    except ValueError:
        return digest


def _json(value: Any) -> bytes:
    """JSON of a value: bytes inside it as base64 strings, futures as `{"$future": id}`,
    NaN and infinities as null."""
    def default(obj: Any) -> Any:
        if isinstance(obj, bytes | bytearray):
            return base64.b64encode(obj).decode()
        if isinstance(obj, FutureRef):
            return {"$future": obj.future}
        raise TypeError(f"{type(obj).__name__} is not JSON")

    try:
        return json.dumps(value, default=default, allow_nan=False).encode()
    except ValueError:
        return json.dumps(finite(value), default=default).encode()
