"""Reading runs back from NATS: status from the journal and the root future, futures with
their dependencies and results, and the journal as an event stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from nalar_common.auth import Principal
from nalar_common.bus import Bus
from nalar_common.digest import digest
from nalar_common.envelope import Envelope
from nalar_common.errors import NalarError
from nalar_common.futures import FutureResult
from nalar_common.journal import Event, decode
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nalar_common.values import carried, public

from nalar_gateway.lookups import Lookups


class RunReader:
    def __init__(self, bus: Bus, lookups: Lookups | None = None) -> None:
        self.bus = bus
        self.names = bus.names
        self.lookups = lookups or Lookups(bus)  # reads through Bus until started

    async def get(self, run: str, *, root: FutureResult | None = None) -> dict[str, Any] | None:
        """The run's view; `root`: its result, when the caller has it (else it is read)."""
        n = self.names
        last = await self.lookups.multi_last(n.runs_stream,
                                             [n.run_event(run, e) for e in _VIEW_EVENTS])
        events = {s.rsplit(".", 1)[1]: decode(m) for s, m in last.items()}
        seqs = {s.rsplit(".", 1)[1]: m.seq for s, m in last.items()}
        created = events.get(Event.CREATED)
        if created is None:
            return None
        out: dict[str, Any] = {
            "run_id": run, "workflow": created.get("workflow"),
            "session_id": created.get("session_id"), "status": "queued",
            "created_at": created.get("ts"), "priority": created.get("priority", 0),
            "deadline": created.get("deadline"),
        }
        who = created.get("principal")
        if who:
            out["started_by"] = Principal.from_dict(who).public()
        if created.get("replay_of"):
            out["replay_of"] = created["replay_of"]
            out["overrides"] = sorted(created.get("overrides") or {})
            if created.get("fork_at"):
                out["fork_at"] = created["fork_at"]
        if Event.STARTED in events:
            out["status"] = "running"
            out["started_at"] = events[Event.STARTED].get("ts")
        if seqs.get(Event.WAITING, 0) > seqs.get(Event.STARTED, 0):
            out["status"] = "waiting"
            out["waiting_for"] = {"signal": events[Event.WAITING].get("signal")}
        if seqs.get(Event.PAUSED, 0) > seqs.get(Event.RESUMED, 0):
            pause = events[Event.PAUSED]
            out["status"] = "paused"
            out["paused_by"] = {k: pause.get(k) for k in (
                "guardrail", "scope", "measure", "max", "value", "action", "future", "agent",
                "method", "message") if pause.get(k) is not None}
        lost = events.get(Event.DEAD_LETTERED)
        if lost is not None and not await self.bus.direct_get_last(
                n.futures_stream, n.future(run, str(lost.get("future")))):
            out["stuck"] = {"future": lost.get("future"), "agent": lost.get("agent"),
                            "method": lost.get("method"), "state": "dead-lettered",
                            "dlq_id": lost.get("dlq_id"), "reason": lost.get("reason")}
        if root is None:
            stored = await self.bus.direct_get_last(n.futures_stream, n.future(run, ROOT_FUTURE))
            if stored is not None:
                root = FutureResult(run, ROOT_FUTURE, stored.data, stored.headers)
        if root is not None:
            body = root.body()
            out["finished_at"] = (body.get("timings") or {}).get("finished") or \
                events.get(Event.FINISHED, {}).get("ts")
            if body.get("status") == "ok":
                out["status"] = "succeeded"
                out["result"] = body.get("value")
                if carried(root.headers):  # kept by reference: where to read it
                    out["result"] = public(out["result"], run, ROOT_FUTURE)
            else:
                err = NalarError.from_wire(body.get("error") or {})
                out["status"] = "cancelled" if err.error_code == "cancelled" else "failed"
                out["error"] = {"code": err.error_code, "message": err.message,
                                "details": err.details}
        return out

    async def created(self, run: str) -> dict[str, Any] | None:
        n = self.names
        stored = await self.bus.direct_get_last(n.runs_stream, n.run_event(run, Event.CREATED))
        return decode(stored) if stored is not None else None

    async def journal(self, run: str) -> dict[str, Any] | None:
        """The audit record of a run: who started it with what, each call with its
        arguments' digest, outcome, usage, placement and the policies in force, and every
        event of the journal (streamed LLM text left out: it is in the event stream)."""
        view = await self.get(run)
        if view is None:
            return None
        calls: dict[str, dict[str, Any]] = {}
        events: list[dict[str, Any]] = []
        async for m in self.bus.iter_stream(self.names.runs_stream, self.names.run_events(run),
                                            follow=False):
            ev = decode(m)
            kind = ev.get("event")
            if kind == Event.TOKEN:
                continue
            if kind == Event.LLM:
                text = ev.pop("text", None)
                ev["text_chars"] = len(text) if isinstance(text, str) else None
            ev["seq"] = m.seq
            events.append(ev)
            if kind == Event.CREATED:
                calls[ROOT_FUTURE] = {"future": ROOT_FUTURE, "agent": DRIVER_AGENT,
                                      "method": ev.get("workflow"),
                                      "args_digest": digest(ev.get("input") or {}),
                                      "created_at": ev.get("ts"), "attempts": 0}
            elif kind in _CALL_EVENTS:
                fid = ROOT_FUTURE if kind == Event.STARTED else ev.get("future")
                if fid is not None:
                    _fold(calls.setdefault(str(fid), {"future": str(fid), "attempts": 0}),
                          kind, ev)
        created = next((e for e in events if e.get("event") == Event.CREATED), {})
        out = {k: view.get(k) for k in ("run_id", "workflow", "session_id", "status",
                                        "created_at", "finished_at", "started_by",
                                        "replay_of") if view.get(k) is not None}
        out["input_digest"] = calls.get(ROOT_FUTURE, {}).get("args_digest")
        out["idempotency_key"] = created.get("idempotency_key")
        out["calls"] = sorted(calls.values(), key=lambda c: _order(c["future"]))
        out["events"] = events
        return out

    async def executions(self, run: str) -> list[dict[str, Any]]:
        """The run's agent-graph execution records, in the order they were appended."""
        n = self.names
        out = []
        for m in await self.bus.read_all(n.runs_stream, n.run_event(run, Event.EXECUTION)):
            ev = decode(m)
            out.append({k: ev[k] for k in ("headers", "telemetry", "result", "error")
                        if k in ev} | {"seq": m.seq})
        return out

    async def paused(self, run: str) -> list[dict[str, Any]]:
        """The guardrail pauses of the run since it was last resumed."""
        n = self.names
        last = await self.bus.direct_get_last(n.runs_stream, n.run_event(run, Event.RESUMED))
        since = last.seq if last is not None else 0
        msgs = await self.bus.read_all(n.runs_stream, n.run_event(run, Event.PAUSED))
        return [decode(m) for m in msgs if m.seq > since]

    async def signals(self, run: str) -> set[str]:
        """Names of the signals the run's driver has asked for."""
        n = self.names
        msgs = await self.bus.read_all(n.runs_stream, n.run_event(run, Event.SIGNAL))
        return {str(decode(m).get("name")) for m in msgs}

    async def futures(self, run: str) -> list[dict[str, Any]]:
        n = self.names
        rows: dict[str, dict[str, Any]] = {}
        async for m in self.bus.iter_stream(n.runs_stream, n.run_events(run), follow=False):
            ev = decode(m)
            kind = ev.get("event")
            if kind == Event.CREATED:
                rows[ROOT_FUTURE] = {"future": ROOT_FUTURE, "agent": DRIVER_AGENT,
                                     "method": ev.get("workflow"), "deps": [], "parent": None,
                                     "status": "pending", "created_at": ev.get("ts")}
            elif kind == Event.FUTURE_CREATED:
                rows[ev["future"]] = {"future": ev["future"], "agent": ev.get("agent"),
                                      "method": ev.get("method"), "deps": ev.get("deps", []),
                                      "parent": ev.get("parent"), "node": ev.get("node"),
                                      "status": "pending", "created_at": ev.get("created_at")}
        results = await self.lookups.multi_last(n.futures_stream, [n.futures_of_run(run)])
        for stored in results.values():
            fid = stored.headers.get(H.FUTURE) or stored.subject.rsplit(".", 1)[1]
            body = Envelope.decode(stored.data).body
            row = rows.setdefault(fid, {"future": fid, "agent": stored.headers.get(H.AGENT),
                                        "method": stored.headers.get(H.METHOD),
                                        "deps": [d for d in (stored.headers.get(H.DEPS) or "")
                                                 .split(",") if d],
                                        "parent": stored.headers.get(H.PARENT)})
            row["status"] = "succeeded" if body.get("status") == "ok" else "failed"
            row["executor"] = stored.headers.get(H.EXECUTOR)
            row["timings"] = body.get("timings") or {}
            if body.get("usage"):
                row["usage"] = body["usage"]
            if body.get("status") != "ok":
                row["error"] = body.get("error")
        return sorted(rows.values(), key=lambda r: _order(r["future"]))

    async def events(self, run: str, *, follow: bool, after: int = 0,
                     idle: float | None = None) -> AsyncGenerator[dict[str, Any] | None, None]:
        """The run's journal events in order, each with its stream `seq`, those after `after`
        only (where a reconnecting client left off). A follower reads on until the run's
        `finished` event and, with `idle`, gets None whenever nothing came for that long (its
        cue to keep its client's connection alive)."""
        n = self.names
        if follow and after > 0:
            done = await self.bus.direct_get_last(n.runs_stream, n.run_event(run, Event.FINISHED))
            if done is not None and done.seq <= after:
                follow = False  # the client saw the end already: nothing to wait for
        stored = self.bus.iter_stream(n.runs_stream, n.run_events(run), follow=follow,
                                      after_seq=after, idle=idle if follow else None)
        try:
            async for m in stored:
                if m is None:
                    yield None
                    continue
                ev = decode(m)
                ev["seq"] = m.seq
                yield ev
                if follow and ev.get("event") == Event.FINISHED:
                    return  # a follower is done; a read of the journal gets what came after
        finally:
            await stored.aclose()  # its consumer goes now, not when the generator is collected


# the journal events a run's view is made of (the last of each): read by name, not all kinds
_VIEW_EVENTS = (Event.CREATED, Event.STARTED, Event.WAITING, Event.PAUSED, Event.RESUMED,
                Event.DEAD_LETTERED, Event.FINISHED)
_CALL_EVENTS = {Event.FUTURE_CREATED, Event.FUTURE_RESOLVED, Event.RETRYING, Event.MIGRATED,
                Event.DEAD_LETTERED, Event.GUARDRAIL, Event.PAUSED, Event.LLM, Event.STARTED}
_RESOLVED_FIELDS = ("status", "code", "executor", "node", "host", "args_digest", "usage",
                    "policy", "kind", "replayed", "timings")


def _fold(row: dict[str, Any], kind: str, ev: dict[str, Any]) -> None:
    """Add one journal event to its call's audit row."""
    if kind == Event.FUTURE_CREATED:
        row.update({k: ev.get(k) for k in ("agent", "method", "deps", "parent", "session")})
        row["sent_to"] = ev.get("node")
        row["created_at"] = ev.get("created_at")
    elif kind == Event.FUTURE_RESOLVED:
        row.setdefault("agent", ev.get("agent"))
        row.setdefault("method", ev.get("method"))
        row["attempts"] = max(int(row.get("attempts") or 0), int(ev.get("attempt") or 1))
        row.update({k: ev[k] for k in _RESOLVED_FIELDS if ev.get(k) is not None})
        row["resolved_at"] = ev.get("ts")
    elif kind == Event.STARTED:  # the driver, on each attempt
        row["attempts"] = int(ev.get("attempt") or row.get("attempts") or 1)
        row.update(node=ev.get("node"), host=ev.get("host"))
    elif kind == Event.LLM:
        row["llm_requests"] = int(row.get("llm_requests") or 0) + 1
    else:
        row.setdefault(kind, []).append({k: v for k, v in ev.items()
                                         if k not in ("event", "run", "future", "seq")})


def _order(fid: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in fid.split("_"))
    except ValueError:
        return (1 << 30,)
