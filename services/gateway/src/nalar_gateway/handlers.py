"""HTTP routes: the v1 API, health, and the Ventis-compatible aliases."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from nalar_common.auth import Principal
from nalar_common.errors import (
    InvalidInput,
    NalarError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from nalar_common.logging import get_logger
from nalar_common.subjects import ID
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from nalar_gateway import values
from nalar_gateway.bodies import SafeJSONResponse, read_json
from nalar_gateway.inputs import RunRequest, validation_error
from nalar_gateway.service import Gateway
from nalar_gateway.streams import EventStream, StreamSlots, TooManyStreams, resume_after
from nalar_gateway.visibility import (
    ADMIN_ROLE,
    cluster_for,
    config_for,
    scrub,
    scrub_all,
    snapshot_for,
)

log = get_logger(__name__)



def error_response(exc: NalarError) -> SafeJSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    if isinstance(exc, TooManyStreams):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return SafeJSONResponse({"error": {"code": exc.error_code, "message": exc.message,
                                   "details": exc.details}}, status_code=exc.http_status,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NalarError)
    async def _nalar(_: Request, exc: NalarError) -> SafeJSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> SafeJSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return SafeJSONResponse({"error": {"code": code, "message": str(exc.detail),
                                       "details": {}}}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> SafeJSONResponse:
        log.exception("gateway.unexpected_error")
        return SafeJSONResponse({"error": {"code": "internal", "message": f"{type(exc).__name__}",
                                       "details": {}}}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> SafeJSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                  for e in exc.errors()]
        return error_response(InvalidInput("invalid request", details={"errors": errors}))


def parse_run_request(data: Any) -> RunRequest:
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object",
                           details={"errors": [{"field": "body", "message": "not an object"}]})
    try:
        return RunRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def check_session_id(session_id: str) -> str:
    if not ID.match(session_id):
        raise NotFound(f"session {session_id[:200]!r} does not exist")
    return session_id


def check_run_id(run_id: str) -> str:
    if not ID.match(run_id):
        raise NotFound(f"run {run_id[:200]!r} does not exist")
    return run_id


def check_future_id(future_id: str) -> str:
    if not ID.match(future_id):
        raise NotFound(f"future {future_id[:200]!r} does not exist")
    return future_id


def check_dlq_id(entry_id: int) -> int:
    if not 0 < entry_id < 2**63:
        raise NotFound(f"dead letter {entry_id} does not exist")
    return entry_id


_RUN_BODY = {"requestBody": {"required": False, "content": {"application/json": {
    "schema": RunRequest.model_json_schema()}}}}


# declared for the OpenAPI document; `Gateway.auth` reads the headers itself
_BEARER = HTTPBearer(auto_error=False, description="An API key (`nk_...`) or a JWT")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


def router(gw: Gateway) -> APIRouter:
    async def principal(request: Request, _b: Any = Security(_BEARER),
                        _k: Any = Security(_API_KEY)) -> Principal:
        return await gw.auth(request)

    public = APIRouter()
    r = APIRouter(dependencies=[Depends(principal)])
    public.include_router(_public(gw))
    _protected(gw, r, principal)
    public.include_router(r)
    return public


def _public(gw: Gateway) -> APIRouter:
    r = APIRouter()

    @r.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @r.get("/readyz", tags=["ops"])
    async def readyz() -> SafeJSONResponse:
        state = gw.ready()
        ok = state["nats"] and state["driver_instances"] > 0
        return SafeJSONResponse({"status": "ready" if ok else "not_ready", **state},
                            status_code=200 if ok else 503)

    return r


async def _answer(gw: Gateway, view: dict[str, Any], wait: float | None,
                  who: Principal) -> SafeJSONResponse:
    """A new run: 202 with its view, or with `?wait` the finished run (200) if it finishes
    in time."""
    if wait:
        finished = await gw.wait_run(view["run_id"], wait)
        if finished and finished["status"] in ("succeeded", "failed", "cancelled"):
            return SafeJSONResponse(scrub(finished, who), status_code=200)
        view = finished or view
    return SafeJSONResponse(scrub(view, who), status_code=202)


def _protected(gw: Gateway, r: APIRouter, principal: Any) -> None:
    async def body_of(request: Request) -> Any:
        return await read_json(request, gw.settings.max_body_bytes, gw.settings.max_json_depth)

    async def admin(who: Principal = Depends(principal)) -> None:
        """Operator endpoints (dead letters hold every tenant's calls; the policy binds
        everyone): admins only."""
        if ADMIN_ROLE not in who.roles:
            raise PermissionDenied(f"this operation needs the {ADMIN_ROLE!r} role",
                                   details={"principal": who.name})

    ops = [Depends(admin)]

    @r.get("/v1/workflows", tags=["workflows"])
    async def workflows() -> dict[str, Any]:
        return {"workflows": gw.workflows()}

    @r.post("/v1/workflows/{name}/runs", status_code=202, tags=["runs"],
            openapi_extra=_RUN_BODY)
    async def start_run(name: str, request: Request,
                        wait: float | None = Query(default=None, ge=0),
                        who: Principal = Depends(principal)) -> SafeJSONResponse:
        gw.check_workflow(name)  # an unknown workflow is a 404 whatever the body
        req = parse_run_request(await body_of(request))
        view, _ = await gw.start_run(name, req, who, wait=bool(wait))
        return await _answer(gw, view, wait, who)

    @r.post("/v1/graphs/{name}/runs", status_code=202, tags=["runs"],
            openapi_extra=_RUN_BODY)
    async def start_graph_run(name: str, request: Request,
                              wait: float | None = Query(default=None, ge=0),
                              who: Principal = Depends(principal)) -> SafeJSONResponse:
        """A lifetime of an agent graph: the same as `/v1/workflows/{name}/runs` for a
        graph's name (`{"input": {"input": ..., "version": "1.0.0"}}`), a 404 otherwise."""
        gw.check_graph(name)
        req = parse_run_request(await body_of(request))
        view, _ = await gw.start_run(name, req, who, wait=bool(wait))
        return await _answer(gw, view, wait, who)

    @r.get("/v1/runs/{run_id}", tags=["runs"])
    async def get_run(run_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        return await gw.run_for(check_run_id(run_id), who)

    @r.get("/v1/runs/{run_id}/futures", tags=["runs"])
    async def run_futures(run_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        await gw.run_for(check_run_id(run_id), who)
        return {"run_id": run_id, "futures": scrub_all(await gw.reader.futures(run_id), who)}

    @r.get("/v1/runs/{run_id}/futures/{future_id}/value", tags=["runs"])
    async def future_value(run_id: str, future_id: str, who: Principal = Depends(principal),
                           accept: str = Header(default="")) -> Response:
        """One future's value: bytes as `application/octet-stream`, text as `text/plain`,
        anything else as JSON (or the stored msgpack with `Accept: application/msgpack`);
        a value kept by reference streams from the values bucket (docs/values.md)."""
        await gw.run_for(check_run_id(run_id), who)
        return await values.future_value(gw.bus, run_id, check_future_id(future_id), accept)

    @r.get("/v1/runs/{run_id}/executions", tags=["runs"])
    async def run_executions(run_id: str,
                             who: Principal = Depends(principal)) -> dict[str, Any]:
        """An agent graph's execution records: each Task and Plan execution's headers,
        policy telemetry and result, append-only (docs/agent-graphs.md)."""
        await gw.run_for(check_run_id(run_id), who)
        return {"run_id": run_id,
                "executions": scrub_all(await gw.reader.executions(run_id), who)}

    @r.get("/v1/runs/{run_id}/journal", tags=["runs"])
    async def run_journal(run_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        await gw.run_for(check_run_id(run_id), who)
        out = await gw.reader.journal(run_id)
        if out is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return {**scrub(out, who), "calls": scrub_all(out["calls"], who),
                "events": scrub_all(out["events"], who)}

    @r.post("/v1/runs/{run_id}/replay", status_code=202, tags=["runs"],
            openapi_extra={"requestBody": {"required": False, "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "overrides": {"type": "object", "additionalProperties": True}}}}}}})
    async def replay_run(run_id: str, request: Request,
                         wait: float | None = Query(default=None, ge=0),
                         who: Principal = Depends(principal)) -> SafeJSONResponse:
        check_run_id(run_id)
        body = await body_of(request)
        body = {} if body is None else body
        if not isinstance(body, dict) or set(body) - {"overrides"} or \
                not isinstance(body.get("overrides", {}), dict):
            raise InvalidInput('body must be {"overrides": {"<future>": <value>, ...}}',
                               details={"errors": [{"field": "overrides",
                                                    "message": "an object"}]})
        view = await gw.replay(run_id, {str(k): v for k, v in
                                        (body.get("overrides") or {}).items()}, who,
                               wait=bool(wait))
        return await _answer(gw, view, wait, who)

    @r.post("/v1/runs/{run_id}/fork", status_code=202, tags=["runs"],
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["at"],
                                                "properties": {"at": {"type": "string"},
                                                               "override": {}}}}}}})
    async def fork_run(run_id: str, request: Request,
                       wait: float | None = Query(default=None, ge=0),
                       who: Principal = Depends(principal)) -> SafeJSONResponse:
        """A new run that reuses the run's results up to future `at` (that one as `override`
        says, if given) and runs live after it."""
        check_run_id(run_id)
        body = await body_of(request)
        if not isinstance(body, dict) or set(body) - {"at", "override"} or \
                not isinstance(body.get("at"), str) or not body["at"]:
            raise InvalidInput('body must be {"at": "<future>", "override": <value>}',
                               details={"errors": [{"field": "at",
                                                    "message": "a future of the run"}]})
        overrides = {body["at"]: body["override"]} if "override" in body else {}
        view = await gw.replay(run_id, overrides, who, wait=bool(wait), fork_at=body["at"])
        return await _answer(gw, view, wait, who)

    slots = StreamSlots(gw.settings.sse_max_per_principal, gw.settings.sse_max_total)

    @r.get("/v1/runs/{run_id}/events", tags=["runs"], status_code=200, response_class=EventStream,
           responses={429: {"description": "Too many live event streams (`Retry-After`)"}})
    async def run_events(run_id: str, follow: bool = True,
                         after: int | None = Query(default=None, ge=0, lt=2**63, description=(
                             "Only the events after this one (an event's `id`)")),
                         last_event_id: str | None = Header(default=None, description=(
                             "As `after`, sent by a reconnecting EventSource; it wins")),
                         who: Principal = Depends(principal)) -> StreamingResponse:
        """The run's journal as server-sent events (`id` is the event's stream sequence);
        with `follow` (the default) until the run finishes, with a `: ping` comment after
        `NALAR_GATEWAY_SSE_PING_S` without an event. Streams per caller and per gateway are
        capped (429 `too_many_streams` before the stream starts)."""
        start = resume_after(last_event_id, after)
        await gw.run_for(check_run_id(run_id), who)
        slot = slots.take(who)  # nothing may raise between here and the response holding it
        events = gw.reader.events(run_id, follow=follow, after=start,
                                  idle=gw.settings.sse_ping_s if follow else None)
        return EventStream(events, slot, lambda ev: scrub(ev, who))

    @r.post("/v1/runs/{run_id}/cancel", status_code=202, tags=["runs"])
    async def cancel_run(run_id: str, who: Principal = Depends(principal)) -> SafeJSONResponse:
        return SafeJSONResponse(await gw.cancel(check_run_id(run_id), who), status_code=202)

    @r.post("/v1/runs/{run_id}/signals/{name}", status_code=202, tags=["runs"],
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["value"],
                                                "properties": {"value": {}}}}}}})
    async def send_signal(run_id: str, name: str, request: Request,
                          who: Principal = Depends(principal)) -> SafeJSONResponse:
        check_run_id(run_id)
        if not ID.match(name):
            raise NotFound(f"run {run_id} has no signal named {name[:200]!r}")
        body = await body_of(request)
        if not isinstance(body, dict) or "value" not in body or set(body) - {"value"}:
            raise InvalidInput('body must be {"value": ...}',
                               details={"errors": [{"field": "value", "message": "required"}]})
        return SafeJSONResponse(await gw.signal(run_id, name, body["value"], who),
                            status_code=202)

    @r.get("/v1/cluster", tags=["ops"])
    async def cluster(who: Principal = Depends(principal)) -> dict[str, Any]:
        return cluster_for(gw.ops.cluster(), who)  # session ids: admins only

    @r.get("/v1/policy", tags=["ops"])
    async def get_policy(history: bool = False,
                         who: Principal = Depends(principal)) -> dict[str, Any]:
        out = await gw.ops.policy()
        out["snapshot"] = snapshot_for(out["snapshot"], who)
        out["config"] = config_for(out["config"], who)
        if history:
            out["history"] = [{**h, "snapshot": snapshot_for(h["snapshot"], who)}
                              for h in await gw.ops.policy_history()]
        return out

    @r.put("/v1/policy", tags=["ops"], dependencies=ops, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["policies"],
            "properties": {"policies": {"type": "array", "items": {"oneOf": [
                {"type": "string"},
                {"type": "object", "required": ["class"],
                 "properties": {"class": {"type": "string"},
                                "params": {"type": "object"}}}]}}}}}}}})
    async def put_policy(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        if not isinstance(body, dict) or set(body) != {"policies"}:
            raise InvalidInput('body must be {"policies": ["module:Class", ...]}',
                               details={"errors": [{"field": "policies", "message": "required"}]})
        return await gw.ops.set_policy(body["policies"])

    @r.get("/v1/dlq", tags=["ops"], dependencies=ops)
    async def dlq_list(limit: int = Query(default=100, ge=1, le=10_000),
                       kind: str | None = Query(default=None, pattern=r"^[a-z_]{1,32}$")
                       ) -> dict[str, Any]:
        return {"dead_letters": await gw.dead_letters.list(limit, kind)}

    @r.get("/v1/dlq/{entry_id}", tags=["ops"], dependencies=ops)
    async def dlq_show(entry_id: int) -> dict[str, Any]:
        return await gw.dead_letters.show(check_dlq_id(entry_id))

    @r.post("/v1/dlq/{entry_id}/retry", tags=["ops"], dependencies=ops)
    async def dlq_retry(entry_id: int) -> dict[str, Any]:
        return await gw.dead_letters.retry(check_dlq_id(entry_id))

    @r.post("/v1/dlq/{entry_id}/discard", tags=["ops"], dependencies=ops)
    async def dlq_discard(entry_id: int) -> dict[str, Any]:
        return await gw.dead_letters.discard(check_dlq_id(entry_id))

    @r.get("/v1/sessions/{session_id}", tags=["sessions"])
    async def get_session(session_id: str,
                          who: Principal = Depends(principal)) -> dict[str, Any]:
        await gw.session_for(check_session_id(session_id), who)
        info = await gw.store.session(session_id)
        if info is None:
            raise NotFound(f"session {session_id!r} does not exist")
        info["placement"] = await gw.placement(session_id, info)
        return info

    @r.delete("/v1/sessions/{session_id}", tags=["sessions"])
    async def end_session(session_id: str,
                          who: Principal = Depends(principal)) -> dict[str, Any]:
        await gw.session_for(check_session_id(session_id), who)
        if not await gw.store.end_session(session_id):
            raise NotFound(f"session {session_id!r} does not exist")
        return {"session_id": session_id, "ended": True}

    # -- Ventis-compatible aliases ------------------------------------------------------
    @r.post("/{workflow}/run", status_code=202, tags=["ventis"])
    async def ventis_run(workflow: str, request: Request,
                         who: Principal = Depends(principal)) -> SafeJSONResponse:
        gw.check_workflow(workflow)
        data = await body_of(request)
        if not isinstance(data, dict):
            raise InvalidInput("body must be a JSON object of workflow arguments")
        view, _ = await gw.start_run(workflow, RunRequest(input=data), who)
        return SafeJSONResponse({"request_id": view["run_id"]}, status_code=202)

    @r.get("/status/{request_id}", tags=["ventis"])
    async def ventis_status(request_id: str,
                            who: Principal = Depends(principal)) -> dict[str, Any]:
        view = await gw.run_for(check_run_id(request_id), who)
        status = {"queued": "pending", "running": "running", "waiting": "running",
                  "paused": "running", "succeeded": "done"}.get(view["status"], "error")
        out: dict[str, Any] = {"request_id": request_id, "status": status}
        if "result" in view:
            out["result"] = view["result"]
        if "error" in view:
            out["error"] = view["error"]["message"]
        return out
