"""Call and result messages: how a future is asked for (NALAR_CALLS) and resolved
(NALAR_FUTURES)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from nats.js.errors import BadRequestError

from nalar_common import values
from nalar_common.bus import Bus
from nalar_common.envelope import Envelope, ValueRef
from nalar_common.errors import AgentError, MalformedMessage, NalarError, Unavailable
from nalar_common.futurekey import FutureKey
from nalar_common.logging import get_logger
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H

log = get_logger(__name__)

WRONG_LAST_SEQUENCE = 10071


@dataclass(frozen=True, slots=True)
class CallSpec:
    """Everything needed to run one future; `args`/`kwargs` hold `FutureRef`s for dependencies."""

    run: str
    future: str
    session: str
    agent: str
    method: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    parent: str = ""
    priority: int = 0
    attempt: int = 1
    hop: int = 0
    deadline: float | None = None
    created_at: float = 0.0
    node: str = ""

    @property
    def key(self) -> str:
        return str(FutureKey(self.run, self.future))

    def headers(self, policy_rev: int | None = None) -> dict[str, str]:
        h = {
            H.FUTURE: self.future, H.RUN: self.run, H.SESSION: self.session,
            H.DEPS: ",".join(self.deps), H.PARENT: self.parent, H.AGENT: self.agent,
            H.METHOD: self.method, H.PRIORITY: str(self.priority), H.ATTEMPT: str(self.attempt),
            # a republished call (migration, retry) needs a new id: JetStream drops repeats
            H.MSG_ID: FutureKey(self.run, self.future).call_msg_id(self.hop, self.attempt),
        }
        if policy_rev is not None:
            h[H.POLICY_REV] = str(policy_rev)
        if self.deadline is not None:
            h[H.DEADLINE] = f"{self.deadline:.3f}"
        return h

    def encode(self, refs: list[ValueRef] | None = None) -> bytes:
        """The `call` envelope; `refs` collects the values by reference in its arguments."""
        return Envelope("call", {
            "run": self.run, "future": self.future, "session": self.session,
            "agent": self.agent, "method": self.method, "args": self.args,
            "kwargs": self.kwargs, "deps": list(self.deps), "parent": self.parent,
            "priority": self.priority, "attempt": self.attempt, "hop": self.hop,
            "deadline": self.deadline, "created_at": self.created_at, "node": self.node,
        }).encode(refs)

    @classmethod
    def decode(cls, data: bytes) -> CallSpec:
        b = Envelope.decode(data, expect="call").body
        try:
            return cls(
                run=str(b["run"]), future=str(b["future"]), session=str(b["session"]),
                agent=str(b["agent"]), method=str(b["method"]), args=list(b.get("args") or []),
                kwargs=dict(b.get("kwargs") or {}), deps=tuple(b.get("deps") or ()),
                parent=str(b.get("parent") or ""), priority=int(b.get("priority") or 0),
                attempt=int(b.get("attempt") or 1), hop=int(b.get("hop") or 0),
                deadline=b.get("deadline"), created_at=float(b.get("created_at") or 0.0),
                node=str(b.get("node") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedMessage(f"call envelope is incomplete: {exc}") from exc

    def moved(self, node: str) -> CallSpec:
        return replace(self, node=node, hop=self.hop + 1)


def result_headers(call_headers: dict[str, str], *, status: str, executor: str) -> dict[str, str]:
    """Result headers: the call's `Nalar-*` headers plus status, executor and write-once guards."""
    h = {k: v for k, v in call_headers.items() if k.startswith("Nalar-")}
    h[H.STATUS] = status
    h[H.EXECUTOR] = executor
    h[H.MSG_ID] = FutureKey.of(h).result_msg_id
    h[H.EXPECTED_LAST_SUBJECT_SEQ] = "0"
    return h


def encode_result(*, value: Any = None, error: NalarError | None = None,
                  timings: dict[str, float] | None = None, executor: str = "",
                  usage: dict[str, Any] | None = None,
                  refs: list[ValueRef] | None = None) -> tuple[str, bytes]:
    """(status, payload); a value that cannot be serialised becomes an error result.
    `usage`: what the call spent (LLM calls and tokens), recorded on the future; `refs`
    collects the values by reference in it."""
    body: dict[str, Any] = {"executor": executor, "timings": timings or {}}
    if usage:
        body["usage"] = usage
    if error is None:
        try:
            return "ok", Envelope("result", {**body, "status": "ok", "value": value}).encode(
                refs)
        except (TypeError, ValueError, OverflowError) as exc:
            error = AgentError(f"result cannot be serialised: {exc}",
                               details={"type": type(value).__name__})
    return "error", Envelope("result", {**body, "status": "error",
                                         "error": error.to_wire()}).encode()


async def publish_result(bus: Bus, call_headers: dict[str, str], *, value: Any = None,
                         error: NalarError | None = None, executor: str,
                         timings: dict[str, float] | None = None,
                         usage: dict[str, Any] | None = None) -> bool:
    """Resolve a future once; False when it was already resolved (a superseded attempt). A
    value over the inline limit is kept in the values bucket and the result carries its
    reference (`nalar_common.values`)."""
    refs: list[ValueRef] = []
    run, fut = call_headers.get(H.RUN, ""), call_headers.get(H.FUTURE, "")
    limit = values.inline_limit(bus)
    if error is None and values.maybe_large(value):  # packed off the event loop
        try:
            value = await values.store_for(bus).keep_if_large(run, fut, "result", value, limit)
        except (TypeError, ValueError, OverflowError):
            pass  # cannot be packed: encode_result says so
        except Unavailable as exc:  # the server refused it: the call fails, not the host
            value, error = None, exc
    status, payload = encode_result(value=value, error=error, timings=timings, executor=executor,
                                    usage=usage, refs=refs)
    if status == "ok" and len(payload) > limit:  # larger than it looked
        try:
            value = await values.store_for(bus).put(run, fut, "result", value)
        except Unavailable as exc:
            value, error = None, exc
        refs = []
        status, payload = encode_result(value=value, error=error, timings=timings,
                                        executor=executor, usage=usage, refs=refs)
    if len(payload) > bus.nc.max_payload - 4096:
        status, payload = encode_result(
            error=AgentError(f"result of {len(payload)} bytes exceeds the message limit",
                             details={"limit": bus.nc.max_payload}),
            timings=timings, executor=executor)
        refs = []
    headers = result_headers(call_headers, status=status, executor=executor)
    headers.pop(H.VALUE_REF, None)  # the call's references are not the result's
    headers.update(values.header(refs))
    try:
        await bus.js.publish(bus.names.future(run, fut), payload, headers=headers)
    except BadRequestError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            log.info("future.duplicate_dropped", run_id=run, future_id=fut)
            return False
        raise
    return True


async def resume_driver(bus: Bus, run: str, node: str) -> bool:
    """Run a run's driver again (after a signal, or its timeout): the same call as the first,
    rebuilt from the journal's `created` event, as a new attempt with a new message id, so it
    replays its finished calls from the stream. False when the run does not exist."""
    from nalar_common.journal import Event, decode

    created = await bus.direct_get_last(bus.names.runs_stream,
                                        bus.names.run_event(run, Event.CREATED))
    if created is None:
        return False
    ev = decode(created)
    spec = CallSpec(run=run, future=ROOT_FUTURE, session=str(ev.get("session_id") or ""),
                    agent=DRIVER_AGENT, method=str(ev.get("workflow")),
                    kwargs=dict(ev.get("input") or {}), priority=int(ev.get("priority") or 0),
                    deadline=ev.get("deadline"), attempt=2,
                    hop=time.time_ns() // 1000 % 1_000_000_000,
                    created_at=time.time())
    await bus.js.publish(bus.names.call(node, DRIVER_AGENT), spec.encode(),
                         headers=spec.headers())
    log.info("run.resumed", run_id=run, node=node)
    return True



async def cancel_run(bus: Bus, run: str, session: str, workflow: str, error: NalarError,
                     executor: str) -> bool:
    """End a run as `cancelled` with `error`: its result is stored first (write-once, so a
    run that finished meanwhile keeps its own outcome), then every controller and host hears
    it and stops its calls. False when the run had already finished."""
    from nalar_common.journal import Event, record

    stored = await publish_result(bus, {
        H.RUN: run, H.FUTURE: ROOT_FUTURE, H.SESSION: session, H.AGENT: DRIVER_AGENT,
        H.METHOD: workflow}, error=error, executor=executor)
    if not stored:
        return False
    await record(bus, run, Event.FINISHED, {"status": "cancelled", "error": error.to_wire()},
                 acked=True, msg_id=f"{run}.finished")
    await bus.nc.publish(bus.names.cancel(run), b"")
    await bus.nc.flush()
    log.info("run.cancelled", run_id=run, by=executor, reason=error.message[:200])
    return True
