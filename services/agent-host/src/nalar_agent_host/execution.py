"""Running one dispatched call on a host: its instance and arguments, the context user code
sees (run, LLM replay, ledger, guardrails, managed state under the session's lease), the
method's timeout and retry policy, a driver leaving to wait for a signal, and what is
reported when it ends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nalar.hosting import (
    App,
    CallContext,
    GuardClient,
    MethodSpec,
    RecordedLLM,
    Runtime,
    Suspend,
    as_error,
    context_for,
    invoke,
    lookup,
    resolve_args,
    run_once,
)
from nalar_common import values
from nalar_common.bus import Bus
from nalar_common.calls import CallSpec, resume_driver
from nalar_common.digest import args_digest
from nalar_common.errors import NalarError, NotFound, ReplayDiverged, Timeout, Unavailable
from nalar_common.journal import Event, deadline_error, record
from nalar_common.ledger import Ledger
from nalar_common.logging import get_logger
from nalar_common.subjects import DRIVER_AGENT, is_signal_future
from nalar_common.subjects import Headers as H
from nalar_common.wire import DepResult, Dispatch

from nalar_agent_host.cancels import Cancellations
from nalar_agent_host.instances import Instance, Instances
from nalar_agent_host.reporting import Reporter
from nalar_agent_host.sessions import SessionStates

log = get_logger(__name__)


class Execution:
    def __init__(self, bus: Bus, node: str, app: App, instances: Instances, runtime: Runtime,
                 pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
                 reporter: Reporter, cancels: Cancellations, ledger: Ledger | None,
                 states: SessionStates | None) -> None:
        self.bus, self.node, self.app, self.instances = bus, node, app, instances
        self.runtime, self.reporter, self.cancels = runtime, reporter, cancels
        self.pool, self.driver_pool = pools
        self.ledger, self.states = ledger, states
        self.host_id = instances.host_id
        self.stats = {"executed": 0, "failed": 0, "duplicates": 0, "retried": 0}

    async def run(self, call: CallSpec, dispatch: Dispatch, reply: str) -> None:
        started = time.time()
        headers, token = dispatch.headers, dispatch.token
        inst = self.instances.get(dispatch.instance)
        value: Any = None
        error: NalarError | None = None
        ctx: CallContext | None = None
        mspec: MethodSpec | None = None
        attempt = int(headers.get(H.ATTEMPT) or call.attempt)
        audit: dict[str, Any] = {"attempt": attempt, "node": self.node, "host": self.host_id,
                                 "policy": {"placement": headers.get(H.POLICY_REV),
                                            **dispatch.revisions}}
        if inst is not None:
            inst.inflight += 1
        try:
            if inst is None:
                raise NotFound(f"instance {dispatch.instance!r} is not on host "
                               f"{self.host_id}")
            fn, mspec = await self._target(call, inst, attempt)
            args, kwargs = resolve_args(call, await self._deps(call, dispatch))
            audit["args_digest"] = args_digest(args, kwargs)  # of the references, as replays
            if values.carried(headers) or any(values.carried(d.headers)
                                               for d in dispatch.deps.values()):
                args, kwargs = await values.store_for(self.bus).resolve([args, kwargs])
            ctx = self._context(call, dispatch, inst, attempt)
            if mspec is not None and mspec.tool:
                audit["kind"] = "tool"
                if dispatch.replay_of:  # its controller could not tell: a replay never
                    raise ReplayDiverged(   # reaches outside
                        f"replay reached tool {call.agent}.{call.method} (future "
                        f"{call.future}), which it may not run: override future "
                        f"{call.future} to give it a result",
                        details={"future": call.future, "replay_of": dispatch.replay_of})
            value = await self._invoke(call, ctx, inst, fn, mspec, args, kwargs, attempt)
        except Suspend as suspend:
            await self._suspend(call, headers, token, reply, suspend)
            return
        except Exception as exc:
            error = as_error(exc, call)
        finally:
            if inst is not None:
                inst.inflight -= 1
        if isinstance(error, Timeout):
            error = await self._past_deadline(call, inst, error)
        if error is not None and mspec is not None and ctx is not None and reply and \
                await self._retry(call, mspec, headers, token, reply, ctx, error):
            return
        await self._report(call, dispatch, reply, inst, value, error, ctx, audit, started)

    async def _deps(self, call: CallSpec, dispatch: Dispatch) -> Mapping[str, DepResult]:
        """The dependencies' results: as the dispatch carries them, and read from the stream
        where it could not (too large together for one message)."""
        missing = [f for f, d in dispatch.deps.items() if not d.data]
        if not missing:
            return dispatch.deps
        names = self.bus.names
        subjects = {names.future(call.run, fid): fid for fid in missing}
        found = await self.bus.multi_last(names.futures_stream, subjects)  # one request
        deps = dict(dispatch.deps)
        for subject, fid in subjects.items():
            stored = found.get(subject)
            if stored is None:
                raise Unavailable(f"result of dependency {fid} is not in the stream",
                                  details={"future": fid})
            deps[fid] = DepResult(data=stored.data, headers=stored.headers)
        return deps

    async def _target(self, call: CallSpec, inst: Instance,
                      attempt: int) -> tuple[Any, MethodSpec | None]:
        """The function the call runs (a driver journals that its run started)."""
        if call.agent != DRIVER_AGENT:
            spec = self.app.agents.get(call.agent)
            return (lookup(inst.target, call.method, call.agent),
                    spec.methods.get(call.method) if spec is not None else None)
        wf = self.app.workflows.get(call.method)
        if wf is None:
            raise NotFound(f"workflow {call.method!r} is not in the app")
        await record(self.bus, call.run, Event.STARTED, {
            "workflow": call.method, "host": self.host_id, "node": self.node,
            "attempt": attempt}, acked=True)
        return wf.fn, None

    def _context(self, call: CallSpec, dispatch: Dispatch, inst: Instance,
                 attempt: int) -> CallContext:
        ctx = context_for(self.runtime, call, attempt)
        self.reporter.sinks(call, ctx)
        if dispatch.replay_of:  # a replay re-runs this call: same LLM asks are served
            ctx.replay = RecordedLLM(self.bus, dispatch.replay_of, call.future)
        ctx.ledger, ctx.instance = self.ledger, inst.info.instance
        if dispatch.guard:
            ctx.guard = GuardClient(self.bus, self.node, run=call.run, future=call.future,
                                    session=call.session, agent=call.agent,
                                    method=call.method)
        return ctx

    async def _invoke(self, call: CallSpec, ctx: CallContext, inst: Instance, fn: Any,
                      mspec: MethodSpec | None, args: Any, kwargs: Any, attempt: int) -> Any:
        """Run user code: cancellable, within its time, once only if it is a tool with side
        effects (`idempotent=False`: its result goes to the ledger, a retry replays it), and
        under the session's state lease if the agent keeps managed state."""
        pool = self.driver_pool if call.agent == DRIVER_AGENT else self.pool
        limit = _time_left(mspec.timeout if mspec is not None else None, call.deadline)

        def start() -> Any:
            return self.cancels.run(call, ctx, invoke(fn, args, kwargs, ctx, pool, limit))

        if mspec is None or mspec.idempotent or self.ledger is None:
            run = start()
        else:
            run = run_once(ctx, f"{call.agent}.{call.method}", start)
        spec = self.app.agents.get(call.agent)
        if spec is None or not spec.uses_state or not call.session or self.states is None:
            return await run
        owner = f"{inst.info.instance}/{call.run}.{call.future}.a{attempt}"
        async with self.states.hold(call.session, call.agent, owner,
                                    inst.info.instance) as (state, lease):
            ctx.state = state
            value = await run
            await self.states.commit(state, lease, op_id=call.key)
        return value

    async def _report(self, call: CallSpec, dispatch: Dispatch, reply: str,
                      inst: Instance | None, value: Any, error: NalarError | None,
                      ctx: CallContext | None, audit: dict[str, Any], started: float) -> None:
        headers, token = dispatch.headers, dispatch.token
        timings = {"created": call.created_at, "dispatched": dispatch.dispatched_at,
                   "started": started, "finished": time.time()}
        executor = inst.info.instance if inst else self.host_id
        usage = ctx.usage if ctx is not None else None
        published = await self.reporter.result(headers, value, error, executor, timings, usage)
        self.stats["executed"] += 1
        if error is not None:
            self.stats["failed"] += 1
            log.info("call.failed", run_id=call.run, future_id=call.future, agent=call.agent,
                     method=call.method, code=error.error_code, message=error.message[:500])
        if not published:  # an earlier attempt resolved it: this result is dropped
            self.stats["duplicates"] += 1
        spent = {k: v for k, v in usage.items() if k != "llm"} if usage else {}
        await self.reporter.resolved(call, headers, executor, error, published,
                                     {"timings": timings, **audit, "usage": spent})
        if call.agent == DRIVER_AGENT:
            await self.reporter.finished(call.run, error if published else None, published)
        if reply:
            await self.reporter.done(reply, headers, token, executor,
                                     "ok" if error is None else "error", usage)

    async def _retry(self, call: CallSpec, mspec: MethodSpec, headers: dict[str, str],
                     token: str, reply: str, ctx: CallContext, error: NalarError) -> bool:
        """Apply the method's retry policy: if `error` is worth another attempt, publish no
        result; the local controller runs the call again after the backoff."""
        if call.run in self.cancels:
            return False
        delay = mspec.retry.delay(ctx.attempt, error)
        deadline = call.deadline
        if delay is None or (deadline is not None and time.time() + delay >= deadline):
            return False
        self.stats["retried"] += 1
        log.info("call.retrying", run_id=call.run, future_id=call.future, agent=call.agent,
                 method=call.method, attempt=ctx.attempt, code=error.error_code,
                 delay=round(delay, 3))
        await record(self.bus, call.run, Event.RETRYING, {
            "future": call.future, "agent": call.agent, "method": call.method,
            "attempt": ctx.attempt, "delay": delay, "error": error.to_wire()})
        await self.reporter.done(reply, headers, token, ctx.instance, "retry", ctx.usage,
                                 retry_after=delay)
        return True

    async def _past_deadline(self, call: CallSpec, inst: Instance | None,
                             error: NalarError) -> NalarError:
        """A call cut short by its deadline (not its method's timeout) says so; a driver
        says where its run was stuck."""
        deadline = call.deadline
        if deadline is None or time.time() < deadline - 0.05:
            return error
        if call.agent == DRIVER_AGENT:
            try:
                return await deadline_error(self.bus, call.run, deadline)
            except Exception:
                return error
        where = inst.info.instance if inst else self.host_id
        return Timeout(f"{call.agent}.{call.method} passed its deadline while running on "
                       f"{where}", details={**error.details, "deadline": deadline,
                                            "stuck": "running", "instance": where})

    async def _suspend(self, call: CallSpec, headers: dict[str, str], token: str, reply: str,
                       suspend: Suspend) -> None:
        """The driver waits for a signal: record `waiting`, free the slot, publish no result.
        If the signal came meanwhile (its sender saw the run still running), resume now."""
        fut = suspend.future
        # nothing here awaits the run's signals any more (only its driver does, and it left):
        # without this, each waiting run kept a subscription and its futures on this host
        await self.runtime.waiter.forget(call.run, is_signal_future)
        await record(self.bus, call.run, Event.WAITING, {
            "signal": fut.method, "future": fut.future, "host": self.host_id}, acked=True)
        log.info("run.waiting", run_id=call.run, signal=fut.method)
        if await self.runtime.waiter.get(call.run, fut.future) is not None:
            node = self.runtime.view.choose_node(DRIVER_AGENT, call.session) or self.node
            await resume_driver(self.bus, call.run, node)
        if reply:
            await self.reporter.done(reply, headers, token, self.host_id, "waiting")


def _time_left(timeout: float | None, deadline: float | None) -> float | None:
    """How long a call may run: its method's timeout, cut short by the deadline of its call
    or run (a call already past its deadline gets none)."""
    if deadline is None:
        return timeout
    left = max(0.001, deadline - time.time())
    return left if timeout is None else min(timeout, left)
