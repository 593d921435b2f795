"""`GET /v1/runs/{id}/futures/{future}/value`: one future's value, streamed from the values
bucket when it is kept by reference (nalar_common.values); bytes as
`application/octet-stream`, text as `text/plain`, anything else as JSON."""

from __future__ import annotations

from typing import Any

from nalar_common.bus import Bus
from nalar_common.envelope import ValueRef
from nalar_common.errors import Conflict, NalarError, NotFound
from nalar_common.futures import FutureResult
from nalar_common.values import carried, store_for
from starlette.responses import Response, StreamingResponse

from nalar_gateway.bodies import SafeJSONResponse

MEDIA = {"bytes": "application/octet-stream", "str": "text/plain; charset=utf-8"}


def href(run: str, future: str) -> str:
    return f"/v1/runs/{run}/futures/{future}/value"


async def future_value(bus: Bus, run: str, future: str) -> Response:
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
    if isinstance(value, ValueRef) and value.kind in MEDIA:
        chunks = await store.reader(value)
        return StreamingResponse(chunks, media_type=MEDIA[value.kind], headers={
            "Content-Length": str(value.size), "Nalar-Value-Ref": value.uri,
            "Digest": value.digest})
    if carried(stored.headers):
        value = await store.resolve(value)
    return _inline(value)


def _inline(value: Any) -> Response:
    if isinstance(value, bytes):
        return Response(value, media_type=MEDIA["bytes"])
    if isinstance(value, str):
        return Response(value.encode("utf-8"), media_type=MEDIA["str"])
    return SafeJSONResponse(value)
