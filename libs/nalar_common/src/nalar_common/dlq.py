"""The dead-letter stream NALAR_DLQ (`nalar.dlq.<kind>`): calls that used up their deliveries,
and messages a service could not read. Each entry keeps the original subject, headers and
body (cut to fit a message), why it landed here, and who put it there; its id is its stream
sequence. Operators list, read, retry (calls only) and discard entries (`nalar dlq ...`).
"""

from __future__ import annotations

import time
from typing import Any

from nats.js.errors import NotFoundError

from nalar_common.bus import Bus, StoredMsg
from nalar_common.calls import CallSpec, publish_result
from nalar_common.errors import Conflict, DeadLettered, NotFound
from nalar_common.logging import get_logger
from nalar_common.subjects import Headers as H

log = get_logger(__name__)

REASON = "Nalar-Dlq-Reason"
SUBJECT = "Nalar-Dlq-Subject"
SERVICE = "Nalar-Dlq-Service"
DELIVERIES = "Nalar-Dlq-Deliveries"
TRUNCATED = "Nalar-Dlq-Truncated"
AT = "Nalar-Dlq-At"


FLOOD_WINDOW_S = 10.0
FLOOD_LIMIT = 20
_recent: dict[tuple[str, str], list[float]] = {}


def _flooding(service: str, subject: str) -> bool:
    """A sender spraying junk (say, telemetry five times a second) fills the stream with
    copies of one mistake: past `FLOOD_LIMIT` per subject and service in `FLOOD_WINDOW_S`,
    further ones are dropped (and counted in the next entry's headers)."""
    now = time.monotonic()
    key = (service, subject)
    times = [t for t in _recent.get(key, ()) if now - t < FLOOD_WINDOW_S]
    if len(_recent) > 10_000:
        _recent.clear()
    flooding = len(times) >= FLOOD_LIMIT
    if not flooding:
        times.append(now)
    _recent[key] = times
    return flooding


async def dead_letter(bus: Bus, *, service: str, subject: str, data: bytes,
                      headers: dict[str, str] | None, reason: str,
                      deliveries: int | None = None, stream: bool = False) -> int | None:
    """Store a message in the dead-letter stream and log it once; never raises (a service
    must go on to the messages behind it). Returns the entry's id, or None if it could not
    be stored (or was one of a flood of junk on a core subject). `stream`: the message came
    from a stream (calls, journal events) and is never dropped as a flood."""
    if not stream and _flooding(service, subject):
        return None
    keep = {k: v[:1024] for k, v in (headers or {}).items()
            if isinstance(k, str) and isinstance(v, str) and not k.startswith("Nats-")
            and k != "Status"}
    out = {**keep, REASON: reason[:1000], SUBJECT: subject[:512], SERVICE: service,
           AT: f"{time.time():.3f}"}
    if deliveries is not None:
        out[DELIVERIES] = str(deliveries)
    limit = bus.nc.max_payload - 16_384
    if len(data) > limit:
        out[TRUNCATED] = str(len(data))
        data = data[:limit]
    kind = bus.names.kind_of(subject)
    try:
        ack = await bus.js.publish(bus.names.dlq(kind), data, headers=out, timeout=5)
    except Exception as exc:
        log.error("message.dead_letter_failed", service=service, subject=subject[:200],
                  reason=reason[:200], error=str(exc))
        return None
    log.warning("message.dead_lettered", service=service, subject=subject[:200], kind=kind,
                reason=reason[:500], dlq_id=ack.seq, run_id=keep.get(H.RUN),
                future_id=keep.get(H.FUTURE))
    return int(ack.seq)


def _entry(m: StoredMsg, *, body: bool = False) -> dict[str, Any]:
    h = m.headers
    out: dict[str, Any] = {
        "id": m.seq, "kind": m.subject.rsplit(".", 1)[-1], "subject": h.get(SUBJECT),
        "reason": h.get(REASON), "service": h.get(SERVICE),
        "at": float(h.get(AT) or 0) or None, "deliveries": int(h[DELIVERIES])
        if h.get(DELIVERIES, "").isdigit() else None,
        "run_id": h.get(H.RUN), "future": h.get(H.FUTURE), "agent": h.get(H.AGENT),
        "method": h.get(H.METHOD), "size": int(h.get(TRUNCATED) or len(m.data)),
    }
    if body:
        out["headers"] = {k: v for k, v in h.items() if not k.startswith(("Nats-", "Nalar-Dlq"))}
        out["truncated"] = TRUNCATED in h
        out["data_hex"] = m.data[:65_536].hex()
        out["call"] = _decode_call(m.data)
    return out


def _decode_call(data: bytes) -> dict[str, Any] | None:
    try:
        spec = CallSpec.decode(data)
    except Exception:
        return None
    return {"agent": spec.agent, "method": spec.method, "args": repr(spec.args)[:4000],
            "kwargs": repr(spec.kwargs)[:4000], "attempt": spec.attempt}


class DeadLetters:
    """Reading and handling dead letters (the gateway's /v1/dlq)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.names = bus.names

    async def list(self, limit: int = 100, kind: str | None = None) -> list[dict[str, Any]]:
        subject = self.names.dlq(kind) if kind else self.names.all_dlq
        out = [_entry(m) for m in await self.bus.read_all(self.names.dlq_stream, subject)]
        return out[-limit:]

    async def _get(self, entry_id: int) -> StoredMsg:
        try:
            raw = await self.bus.js.get_msg(self.names.dlq_stream, seq=entry_id)
        except NotFoundError:
            raise NotFound(f"dead letter {entry_id} does not exist",
                           details={"id": entry_id}) from None
        headers = dict(raw.headers or {})
        return StoredMsg(subject=raw.subject or "", data=raw.data or b"", headers=headers,
                         seq=int(raw.seq or entry_id))

    async def show(self, entry_id: int) -> dict[str, Any]:
        return _entry(await self._get(entry_id), body=True)

    async def discard(self, entry_id: int) -> dict[str, Any]:
        """Delete the entry; a call's future fails with `DeadLettered`, so its run goes on
        (its caller sees the error) instead of waiting for the call."""
        m = await self._get(entry_id)
        entry = _entry(m)
        failed = False
        if entry["kind"] == "call" and entry["run_id"] and entry["future"]:
            failed = await publish_result(self.bus, m.headers, error=DeadLettered(
                f"call {entry['agent']}.{entry['method']} was dead-lettered "
                f"({entry['reason']}) and discarded", details={"dlq_id": entry_id}),
                executor="dlq")
        await self.bus.js.delete_msg(self.names.dlq_stream, entry_id)
        return {"id": entry_id, "status": "discarded", "future_failed": failed}

    async def retry(self, entry_id: int) -> dict[str, Any]:
        """Put a dead-lettered call back on its subject as a new attempt (its deliveries count
        from zero again), then delete the entry."""
        m = await self._get(entry_id)
        entry = _entry(m)
        if entry["kind"] != "call" or not entry["subject"]:
            raise Conflict(f"dead letter {entry_id} is a {entry['kind']} message: only calls "
                           "can be retried", details={"id": entry_id, "kind": entry["kind"]})
        if m.headers.get(TRUNCATED):
            raise Conflict(f"dead letter {entry_id} was cut to fit the stream: it cannot be "
                           "sent again", details={"id": entry_id})
        run, fut = entry["run_id"] or "", entry["future"] or ""
        if run and fut and await self.bus.direct_get_last(
                self.names.futures_stream, self.names.future(run, fut)) is not None:
            raise Conflict(f"future {fut} of run {run} has already resolved",
                           details={"id": entry_id})
        headers = {k: v for k, v in m.headers.items()
                   if not k.startswith(("Nats-", "Nalar-Dlq")) and k != "Status"}
        attempt = int(headers.get(H.ATTEMPT) or 1) + 1
        headers[H.ATTEMPT] = str(attempt)
        headers[H.MSG_ID] = f"{run}.{fut}.dlq{entry_id}.a{attempt}"
        await self.bus.js.publish(entry["subject"], m.data, headers=headers)
        await self.bus.js.delete_msg(self.names.dlq_stream, entry_id)
        log.info("dead_letter.retried", dlq_id=entry_id, run_id=run, future_id=fut)
        return {"id": entry_id, "status": "retried", "subject": entry["subject"],
                "attempt": attempt}


__all__ = ["DeadLetters", "dead_letter"]
