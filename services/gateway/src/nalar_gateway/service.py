"""Gateway: owns the NATS connection, the runtime that submits drivers, the session store and
the loaded app; the FastAPI routes (`handlers.py`) call into it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from nalar.app import App, load_app
from nalar.runtime import Runtime
from nalar_common.auth import Principal
from nalar_common.authz import PolicyFile
from nalar_common.bus import Bus
from nalar_common.calls import cancel_run, publish_result, resume_driver
from nalar_common.dlq import DeadLetters
from nalar_common.envelope import pack
from nalar_common.errors import (
    Cancelled,
    Conflict,
    InvalidInput,
    NalarError,
    NoInstance,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Unavailable,
)
from nalar_common.guardrails import RESUME, waive
from nalar_common.journal import Event, is_waiting, record
from nalar_common.ledger import LEDGER_TTL_S
from nalar_common.logging import get_logger
from nalar_common.policyspec import PolicyAllowList
from nalar_common.state import SessionStore
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE, signal_future
from nalar_common.subjects import Headers as H
from nats.js.errors import KeyNotFoundError
from pydantic import BaseModel

from nalar_gateway.auth import Authenticator
from nalar_gateway.capacity import Capacity
from nalar_gateway.drivers import driver_spec, publish_driver_call
from nalar_gateway.faults import CRASH_AFTER_CREATED, crash_point
from nalar_gateway.inputs import RunRequest, input_model, validate_input
from nalar_gateway.operations import Operations
from nalar_gateway.results import RunResults
from nalar_gateway.runs import RunReader
from nalar_gateway.settings import GatewaySettings
from nalar_gateway.visibility import scrub, sees

log = get_logger(__name__)
MESSAGE_HEADROOM = 16_384  # what a run's messages hold beside its input (headers, principal)


class Gateway:
    def __init__(self, bus: Bus, store: SessionStore, settings: GatewaySettings,
                 auth: Authenticator, access: PolicyFile, app: App | None = None, *,
                 policy_classes: PolicyAllowList | None = None) -> None:
        self.bus, self.store, self.settings, self.auth = bus, store, settings, auth
        self.access = access
        self.resume_roles = {r.strip() for r in auth.settings.resume_roles.split(",")
                             if r.strip()}
        self.app = app or load_app(settings.app)
        self.models: dict[str, type[BaseModel]] = {
            name: input_model(spec) for name, spec in self.app.workflows.items()}
        self.runtime = Runtime(bus)
        self.reader = RunReader(bus)
        self.results = RunResults(bus)
        self.dead_letters = DeadLetters(bus)
        self.capacity = Capacity(bus)
        self.ops = Operations(bus, self.runtime.view,
                              policy_classes or PolicyAllowList.builtin())
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.ensure_topology()
        self._task = asyncio.create_task(self.runtime.run())
        await self.runtime.wait_ready()
        await self.results.start()
        await self.reader.lookups.start()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        await self.bus.close()  # drain NATS, then Redis
        await self.store.close()

    def ready(self) -> dict[str, Any]:
        drivers = self.runtime.view.live_instances(DRIVER_AGENT)
        return {"nats": self.bus.nc.is_connected, "driver_instances": len(drivers),
                "nodes": sorted(self.runtime.view.nodes()),
                "policy_revision": self.runtime.view.snapshot.revision
                if self.runtime.view.snapshot else None}

    def workflows(self) -> list[dict[str, Any]]:
        return [{"name": name, "doc": spec.doc, "is_async": spec.is_async,
                 "input_schema": self.models[name].model_json_schema()}
                for name, spec in sorted(self.app.workflows.items())]

    def check_workflow(self, workflow: str) -> None:
        if workflow not in self.app.workflows:
            raise NotFound(f"workflow {workflow!r} does not exist",
                           details={"workflow": workflow,
                                    "available": sorted(self.app.workflows)})

    def check_graph(self, name: str) -> None:
        """NotFound unless `name` is an agent graph of the app (docs/agent-graphs.md)."""
        graphs = sorted(n for n, spec in self.app.workflows.items()
                        if hasattr(getattr(spec.fn, "__self__", None), "versions"))
        if name not in graphs:
            raise NotFound(f"agent graph {name!r} does not exist",
                           details={"graph": name, "available": graphs})

    def authorize(self, principal: Principal, workflow: str) -> None:
        """PermissionDenied unless the policy lets `principal` start `workflow`."""
        decision = self.access.current().workflow(principal, workflow)
        if not decision.allowed:
            log.info("run.denied", workflow=workflow, principal=principal.name,
                     rule=decision.rule, policy=decision.revision)
            raise PermissionDenied(decision.why(f"workflow {workflow!r}", principal),
                                   details={"workflow": workflow, "rule": decision.rule,
                                            "policy_revision": decision.revision})

    def authorize_action(self, principal: Principal, action: str, run_id: str) -> None:
        """PermissionDenied unless the policy's `runs` section lets `principal` cancel,
        signal or replay a run (that it can see)."""
        decision = self.access.current().run_action(principal, action)
        if not decision.allowed:
            log.info("run.action_denied", action=action, run_id=run_id,
                     principal=principal.name, policy=decision.revision)
            raise PermissionDenied(f"policy {decision.revision} lets only the roles in "
                                   f"`runs.{action}` {action} a run",
                                   details={"action": action, "rule": decision.rule,
                                            "policy_revision": decision.revision})

    async def start_run(self, workflow: str, req: RunRequest, principal: Principal, *,
                        wait: bool = False) -> tuple[dict[str, Any], bool]:
        """Admit a run started by `principal`; returns (run view, created) where created is
        False for a repeated idempotency key, which returns the run that key already
        started. `wait`: `wait_run` follows for the run."""
        self.check_workflow(workflow)
        self.authorize(principal, workflow)
        inputs = validate_input(self.models[workflow], req.input)
        self.check_fits(inputs)
        await self.capacity.check()  # 503 while NALAR_CALLS or NALAR_RUNS is nearly full
        timeout_s = self.check_timeout(req.timeout_s)
        if not self.runtime.view.live_instances(DRIVER_AGENT):
            raise NoInstance("no agent host can run workflow drivers right now")
        run_id = uuid.uuid4().hex
        session = req.session_id or uuid.uuid4().hex
        if req.session_id:  # claimed for the caller's tenant, or refused as if unknown
            owner = await self.store.claim_session(req.session_id, principal.tenant)
            if not self.sees(principal, owner):
                raise NotFound(f"session {req.session_id!r} does not exist")
        if req.idempotency_key:
            # the key outlives the run it names: a retry never starts a second one
            tenant, key = principal.tenant, req.idempotency_key
            ttl = max(self.settings.idempotency_ttl_s, int(timeout_s) + 3600)
            owner = await self.store.claim_idempotency_key(tenant, key, run_id, ttl)
            if owner != run_id:
                existing = await self._await_created(owner)
                if existing is not None:
                    return self._own(existing, principal), False
                # the claimer died before creating its run: take the key over
                owner = await self.store.replace_idempotency_key(tenant, key, owner, run_id, ttl)
                if owner != run_id:
                    existing = await self._await_created(owner)
                    if existing is None:
                        raise Unavailable("the run of this idempotency key is being created; "
                                          "retry", details={"idempotency_key": key})
                    return self._own(existing, principal), False
        deadline = time.time() + timeout_s
        return await self._launch(run_id, workflow, session, inputs, principal,
                                  priority=req.priority, deadline=deadline, wait=wait,
                                  idempotency_key=req.idempotency_key), True

    def check_fits(self, value: Any, what: str = "the run's input") -> None:
        """413 at once for a value (a run's input, a replay's overrides, a signal's value)
        that the messages carrying it could not (NATS refuses a message over its
        max_payload): before any key, session or journal event is written."""
        room = self.bus.nc.max_payload - MESSAGE_HEADROOM
        size = len(pack(value))
        if size > room:
            raise PayloadTooLarge(f"{what} takes {size} bytes; one message carries at most "
                                  f"{room}", details={"limit": room, "size": size})

    def check_timeout(self, timeout_s: float | None) -> float:
        """The run's timeout, which may not outlive what it needs: its journal and results
        (the streams' retention) and its ledger records (7 days). Its idempotency key is
        kept at least as long (`start_run`)."""
        s = self.bus.settings
        longest = min(s.futures_max_age_s, s.runs_max_age_s, LEDGER_TTL_S)
        if timeout_s is None:
            return min(self.settings.run_timeout_s, longest)
        if timeout_s > longest:
            raise InvalidInput(f"timeout_s {timeout_s:g} exceeds the {longest:g} s that runs' "
                               "results, journals and idempotency records are kept "
                               "(NALAR_NATS_FUTURES_MAX_AGE_S, NALAR_NATS_RUNS_MAX_AGE_S, 7 "
                               "days)", details={"errors": [{
                                   "field": "timeout_s", "message": f"at most {longest:g}"}]})
        return timeout_s

    def _own(self, view: dict[str, Any], principal: Principal) -> dict[str, Any]:
        """An existing run returned for an idempotency key: the caller's tenant's, or none."""
        if not self.sees(principal, (view.get("started_by") or {}).get("tenant")):
            raise NotFound("no run of yours has this idempotency key")
        return scrub(view, principal)

    async def _launch(self, run_id: str, workflow: str, session: str, inputs: dict[str, Any],
                      principal: Principal, *, priority: int, deadline: float,
                      wait: bool = False, **extra: Any) -> dict[str, Any]:
        """Journal the run's `created` event (who, what, with which input) and send its
        driver; the run view. `extra` goes into the event (an idempotency key, a replay's
        original and overrides); `wait`: `wait_run` follows."""
        await self.store.register_run(session, run_id, workflow, time.time(), principal.tenant)
        await record(self.bus, run_id, Event.CREATED, {
            "workflow": workflow, "session_id": session, "input": inputs,
            "priority": priority, "deadline": deadline, "principal": principal.to_dict(),
            **extra}, acked=True, msg_id=f"{run_id}.created")
        # fault injection (tests only): die before the driver call is published; the state
        # store starts the run (nalar_state_store.starts)
        crash_point(CRASH_AFTER_CREATED)
        if wait:  # before the call goes out: its result cannot come unheard
            self.results.expect(run_id)
        try:
            await publish_driver_call(self.bus, self.runtime.view, driver_spec(
                run_id, session, workflow, inputs, priority=priority, deadline=deadline))
        except Exception as exc:
            if not isinstance(exc, NalarError) or exc.retryable:
                # NATS slow or away: the run is in the journal, and the state store sends
                # its driver call (the same message id: never twice) once its grace is up.
                # Failing it here could race that start.
                log.warning("run.start_deferred", run_id=run_id, error=str(exc))
                return self._queued(run_id, session, workflow, deadline, principal, extra)
            self.results.forget(run_id)
            err = exc  # the call itself is refused: fail the run rather than leave it queued
            await publish_result(self.bus, {H.RUN: run_id, H.FUTURE: ROOT_FUTURE,
                                            H.SESSION: session, H.AGENT: DRIVER_AGENT,
                                            H.METHOD: workflow}, error=err, executor="gateway")
            await record(self.bus, run_id, Event.FINISHED,
                         {"status": "failed", "error": err.to_wire()}, acked=True,
                         msg_id=f"{run_id}.finished")
            raise err from exc
        log.info("run.created", run_id=run_id, session_id=session, workflow=workflow,
                 principal=principal.name, replay_of=extra.get("replay_of"))
        return self._queued(run_id, session, workflow, deadline, principal, extra)

    @staticmethod
    def _queued(run_id: str, session: str, workflow: str, deadline: float,
                principal: Principal, extra: dict[str, Any]) -> dict[str, Any]:
        view = {"run_id": run_id, "session_id": session, "workflow": workflow,
                "status": "queued", "created_at": time.time(), "deadline": deadline,
                "started_by": principal.public()}
        if extra.get("replay_of"):
            view["replay_of"] = extra["replay_of"]
        if extra.get("fork_at"):
            view["fork_at"] = extra["fork_at"]
        return view

    async def replay(self, run_id: str, overrides: dict[str, Any], principal: Principal, *,
                     wait: bool = False, fork_at: str | None = None) -> dict[str, Any]:
        """Run a finished run's workflow again as a new run marked as its replay: its calls
        are answered from the original's journal (or by `overrides`, future -> value) by the
        local controllers, and only calls whose inputs changed run again, tools never. A
        fork (`fork_at`, a future of the run) does that up to that future, and runs live
        after it (tools included)."""
        view = await self.run_for(run_id, principal)
        self.authorize_action(principal, "replay", run_id)
        if view["status"] not in ("succeeded", "failed", "cancelled"):
            raise Conflict(f"run {run_id} is {view['status']}: only a finished run can be "
                           "replayed", details={"status": view["status"]})
        workflow = str(view["workflow"])
        self.check_workflow(workflow)
        self.authorize(principal, workflow)
        futures = {f["future"]: f for f in await self.reader.futures(run_id)}
        bad = [f for f in [*overrides, *([fork_at] if fork_at else [])]
               if f not in futures or f == ROOT_FUTURE
               or futures[f].get("agent", "").startswith("_")]
        if bad:
            raise InvalidInput(f"run {run_id} has no agent call future {bad[0]!r} to override",
                               details={"errors": [{"field": f"overrides.{f}",
                                                    "message": "not an agent call of the run"}
                                                   for f in bad]})
        created = await self.reader.created(run_id) or {}
        self.check_fits({"input": created.get("input"), "overrides": overrides},
                        "the replay's input and overrides")
        await self.capacity.check()
        new_run, session = uuid.uuid4().hex, uuid.uuid4().hex
        await self._copy_signals(run_id, new_run, session)
        return await self._launch(
            new_run, workflow, session, dict(created.get("input") or {}), principal,
            priority=int(created.get("priority") or 0),
            deadline=time.time() + self.check_timeout(None), wait=wait, replay_of=run_id,
            overrides=overrides, **({"fork_at": fork_at} if fork_at else {}))

    async def _copy_signals(self, run: str, new_run: str, session: str) -> None:
        """The signals the original run got, given to its replay up front (in the journal
        like any other answer)."""
        for row in await self.reader.futures(run):
            if row.get("agent") != "_signal" or row.get("status") not in ("succeeded", "failed"):
                continue
            stored = await self.runtime.waiter.get(run, row["future"])
            if stored is None:
                continue
            err = stored.error()
            await publish_result(self.bus, {
                H.RUN: new_run, H.FUTURE: row["future"], H.SESSION: session,
                H.AGENT: "_signal", H.METHOD: str(row.get("method") or "")},
                value=None if err else stored.value(), error=err, executor="replay:journal")

    # -- tenants: a principal sees its tenant's runs and sessions (admins see all) ---------
    sees = staticmethod(sees)

    async def run_for(self, run_id: str, principal: Principal) -> dict[str, Any]:
        """The run's view if `principal` may see it (server tracebacks for admins only);
        another tenant's run is a 404, as if it did not exist."""
        view = await self.reader.get(run_id)
        if view is None or not self.sees(principal,
                                         (view.get("started_by") or {}).get("tenant")):
            raise NotFound(f"run {run_id!r} does not exist")
        return scrub(view, principal)

    async def session_for(self, session: str, principal: Principal) -> None:
        """404 for a session that does not exist or is another tenant's."""
        exists, tenant = await self.store.session_tenant(session)
        if not exists or not self.sees(principal, tenant):
            raise NotFound(f"session {session!r} does not exist")

    async def _await_created(self, run_id: str, timeout: float = 30.0) -> dict[str, Any] | None:
        """A concurrent POST with the same key may still be writing its `created` event;
        None when it never appears (that gateway died between claiming and creating)."""
        deadline = time.monotonic() + timeout
        while True:
            view = await self.reader.get(run_id)
            if view is not None or time.monotonic() > deadline:
                return view
            await asyncio.sleep(0.05)

    async def signal(self, run_id: str, name: str, value: Any,
                     principal: Principal) -> dict[str, Any]:
        """Resolve the run's signal `name` (once) and wake the driver if it left to wait;
        `resume` lets a run that a guardrail paused go on."""
        self.check_fits(value, "the signal's value")
        view = await self.run_for(run_id, principal)
        declared = await self.reader.signals(run_id)
        if name != RESUME or name in declared:  # resume has roles of its own
            self.authorize_action(principal, "signal", run_id)
        if name == RESUME and name not in declared:
            return await self.resume(view, value, principal)
        if view["status"] in ("succeeded", "failed", "cancelled"):
            raise Conflict(f"run {run_id} has finished ({view['status']})")
        if name not in declared:
            raise NotFound(f"run {run_id} is not waiting for a signal named {name!r}",
                           details={"signal": name})
        fid = signal_future(name)
        stored = await publish_result(self.bus, {
            H.RUN: run_id, H.FUTURE: fid, H.SESSION: str(view.get("session_id") or ""),
            H.AGENT: "_signal", H.METHOD: name}, value=value, executor="gateway")
        if not stored:
            raise Conflict(f"signal {name!r} of run {run_id} was already given",
                           details={"signal": name})
        await record(self.bus, run_id, Event.SIGNALLED, {"signal": name, "future": fid},
                     acked=True)
        # read the status only now: a driver that starts waiting after this sees the signal
        # itself when it records `waiting` (and resumes on its own)
        if await is_waiting(self.bus, run_id):
            node = self.runtime.view.choose_node(DRIVER_AGENT, str(view.get("session_id")))
            if node is not None:
                await resume_driver(self.bus, run_id, node)
        return {"run_id": run_id, "signal": name, "status": "delivered"}

    async def resume(self, view: dict[str, Any], value: Any,
                     principal: Principal) -> dict[str, Any]:
        """Lift the guardrails that paused the run (for the rest of it) and let its paused
        calls go on; the journal records who did it and the value they sent."""
        run_id = str(view["run_id"])
        if not set(principal.roles) & self.resume_roles:
            raise PermissionDenied(f"resuming a paused run needs one of the roles "
                                   f"{sorted(self.resume_roles)}", details={
                                       "roles": sorted(self.resume_roles)})
        paused = await self.reader.paused(run_id)
        if not paused or view["status"] != "paused":
            raise Conflict(f"run {run_id} is not paused by a guardrail",
                           details={"signal": RESUME})
        lifted = sorted({str(p.get("guardrail")) for p in paused})
        await waive(self.store.r, self.bus.names, run_id, lifted)
        await record(self.bus, run_id, Event.RESUMED, {
            "signal": RESUME, "lifted": lifted, "by": principal.public(), "value": value},
            acked=True)
        await self.bus.nc.publish(self.bus.names.resume(run_id), b"")
        await self.bus.nc.flush()
        log.info("run.resumed_by_signal", run_id=run_id, lifted=lifted, by=principal.name)
        return {"run_id": run_id, "signal": RESUME, "status": "delivered", "lifted": lifted}

    async def placement(self, session: str, info: dict[str, Any]) -> dict[str, str]:
        """Where the session lives now: the instance pinned for each stateful agent, and the
        instance holding each agent's state lease (while one of its calls runs)."""
        out: dict[str, str] = {}
        for row in info.get("agents", []):
            if row.get("lease"):
                out[row["agent"]] = str(row["lease"]).split("/", 1)[0]
        pins = await self.bus.kv(self.bus.names.pins_bucket)
        for name, spec in self.app.agents.items():
            if spec.stateful:
                try:
                    entry = await pins.get(self.bus.names.pin_key(name, session))
                except KeyNotFoundError:
                    continue
                if entry.value:
                    out[name] = entry.value.decode()
        return out

    async def cancel(self, run_id: str, principal: Principal) -> dict[str, Any]:
        """End a run as `cancelled`: its result is stored first (write-once, so a run that
        finishes meanwhile keeps its own outcome), then every controller and host hears it."""
        view = await self.run_for(run_id, principal)
        self.authorize_action(principal, "cancel", run_id)
        err = Cancelled(f"run {run_id} was cancelled")
        if not await cancel_run(self.bus, run_id, str(view.get("session_id") or ""),
                                str(view.get("workflow")), err, "gateway"):
            raise Conflict(f"run {run_id} has already finished",
                           details={"status": (await self.reader.get(run_id) or {}).get("status")})
        return {"run_id": run_id, "status": "cancelled"}

    async def wait_run(self, run_id: str, timeout: float) -> dict[str, Any] | None:
        """The run's view once it has a result, or after `timeout` (at most
        `NALAR_GATEWAY_MAX_WAIT_S`) as it is then. The view is built on the result that came,
        not on a read of it: the stream may store it a moment after it was delivered."""
        result = await self.results.wait(run_id, min(timeout, self.settings.max_wait_s))
        return await self.reader.get(run_id, root=result)
