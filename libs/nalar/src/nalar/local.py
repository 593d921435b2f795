"""Local mode: an app's workflows run in one process with no servers.

The same stubs, futures, dependency resolution (futures nested in lists and dicts), typed
errors, input validation, retries, call deadlines, managed state (kept in memory) and wire
encoding (every call and result goes through the msgpack envelope) as on the stack, so a
workflow gives the same result in both (tests/test_semantics.py runs one suite on both):

    nalar run --local APP_DIR WORKFLOW '{"input": {...}, "session_id": "s1"}'
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from nalar_common.calls import CallSpec, encode_result
from nalar_common.envelope import pack, unpack
from nalar_common.errors import DependencyFailed, InvalidInput, NalarError, NotFound, Timeout
from nalar_common.futures import FutureResult
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nalar_common.wire import DepResult
from pydantic import BaseModel

from nalar.app import App, load_app
from nalar.context import CallContext, CancelFlag
from nalar.engines import LLMSettings, SimulatedEngine, build_engine
from nalar.execution import as_error, context_for, invoke, lookup, resolve_args
from nalar.future import Future
from nalar.inputs import input_model, validate_input
from nalar.once import MemoryLedger, run_once
from nalar.registry import WorkflowSpec
from nalar.retry import DEFAULT_RETRY
from nalar.runtime import encode_call, sooner, to_wire
from nalar.state import CallState


class LocalRuntime:
    """Plays the stack's part in one process: one instance per agent, `concurrency` calls at
    once each, state per (session, agent) in memory, a session's calls of a stateful agent one
    at a time in order. Use as `async with LocalRuntime(app)`."""

    def __init__(self, app: App, *, engine: Any = None) -> None:
        self.app = app
        self.engine = engine if engine is not None else SimulatedEngine()
        self._instances = {name: spec.cls() for name, spec in app.agents.items()}
        self._slots = {name: asyncio.Semaphore(spec.concurrency)
                       for name, spec in app.agents.items()}
        self._futures: dict[tuple[str, str], Future[Any]] = {}
        self._state: dict[tuple[str, str], tuple[bytes, int]] = {}
        self._state_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.pool = ThreadPoolExecutor(max_workers=max(8, sum(
            s.concurrency for s in app.agents.values())), thread_name_prefix="nalar-local")
        self.driver_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="nalar-driver")
        self.ledger = MemoryLedger()
        self._inputs: dict[str, type[BaseModel]] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "use `async with LocalRuntime`"
        return self._loop

    async def __aenter__(self) -> LocalRuntime:
        self._loop = asyncio.get_running_loop()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Wait for calls still running (cancel them if the block failed); the block's own
        exception propagates as it is, never wrapped in an ExceptionGroup."""
        assert self._tg is not None
        try:
            if et is not None:
                for task in list(self._tasks):
                    task.cancel()
            await self._tg.__aexit__(None, None, None)
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.driver_pool.shutdown(wait=False, cancel_futures=True)

    # -- the runtime protocol stubs use --------------------------------------------------
    def submit(self, ctx: CallContext, agent: str, method: str, args: Sequence[Any],
               kwargs: Mapping[str, Any], *, priority: int | None = None,
               deadline: float | None = None) -> Future[Any]:
        assert self._loop is not None and self._tg is not None, "use `async with LocalRuntime`"
        fid = ctx.next_future_id()
        deps: dict[str, None] = {}
        spec = CallSpec(run=ctx.run, future=fid, session=ctx.session, agent=agent, method=method,
                        args=to_wire(list(args), ctx.run, deps),
                        kwargs=to_wire(dict(kwargs), ctx.run, deps), deps=tuple(deps),
                        parent=ctx.future, priority=ctx.priority if priority is None else priority,
                        deadline=sooner(ctx.deadline, deadline), created_at=time.time())
        payload = encode_call(spec)  # unsendable arguments fail here, as on the stack
        fut: Future[Any] = Future(ctx.run, fid, agent, method, self._loop)
        self._futures[(ctx.run, fid)] = fut
        tg = self._tg
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._start(tg, fut, payload)
        else:
            self._loop.call_soon_threadsafe(self._start, tg, fut, payload)
        return fut

    def _start(self, tg: asyncio.TaskGroup, fut: Future[Any], payload: bytes) -> None:
        task = tg.create_task(self._call(fut, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- execution ----------------------------------------------------------------------------
    async def _call(self, fut: Future[Any], payload: bytes) -> None:
        call = CallSpec.decode(payload)
        started = time.time()
        value: Any = None
        error: NalarError | None = None
        deps: dict[str, DepResult] = {}
        try:
            for dep in call.deps:
                async with _until_deadline(call, f"waiting for {dep}"):
                    result = await self._resolved(call.run, dep)
                if not result.ok:
                    cause = result.error()
                    raise DependencyFailed(
                        f"argument future {dep} failed: {cause.message if cause else ''}",
                        details={"dependency": dep, "cause": cause.to_wire() if cause else None})
                deps[dep] = DepResult(data=result.data, headers=result.headers)
            value = await self._run_agent(call, deps)
        except Exception as exc:
            error = as_error(exc, call)
        timings = {"created": call.created_at, "started": started, "finished": time.time()}
        status, data = encode_result(value=value, error=error, timings=timings,
                                     executor=f"local.{call.agent}")
        fut._resolve(FutureResult(call.run, call.future, data,
                                  {H.STATUS: status, H.EXECUTOR: f"local.{call.agent}"}))

    async def _resolved(self, run: str, future: str) -> FutureResult:
        dep = self._futures.get((run, future))
        if dep is None:
            raise NotFound(f"future {future} of run {run} does not exist")
        await dep._wait_here()
        assert dep._result is not None
        return dep._result

    async def _run_agent(self, call: CallSpec, deps: dict[str, DepResult]) -> Any:
        spec = self.app.agents.get(call.agent)
        if spec is None:
            raise NotFound(f"agent {call.agent!r} is not in the app")
        fn = lookup(self._instances[call.agent], call.method, call.agent)
        args, kwargs = resolve_args(call, deps)
        mspec = spec.methods.get(call.method)
        retry = mspec.retry if mspec is not None else DEFAULT_RETRY
        attempt = 1
        while True:  # the retry policy, as the local controller applies it on a stack
            try:
                return await self._attempt(call, spec, mspec, fn, args, kwargs, attempt)
            except Exception as exc:
                delay = retry.delay(attempt, as_error(exc, call))
                if delay is None or (call.deadline is not None and
                                     time.time() + delay >= call.deadline):
                    raise
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, call: CallSpec, spec: Any, mspec: Any, fn: Any, args: list[Any],
                       kwargs: dict[str, Any], attempt: int) -> Any:
        ctx = context_for(self, call, attempt)
        ctx.cancelled = CancelFlag()
        ctx.ledger, ctx.instance = self.ledger, f"local.{call.agent}"

        async def run() -> Any:
            limit = _time_left(mspec.timeout if mspec is not None else None, call.deadline)
            try:
                if mspec is not None and not mspec.idempotent:
                    return await run_once(ctx, f"{call.agent}.{call.method}",
                                          lambda: invoke(fn, args, kwargs, ctx, self.pool,
                                                         limit))
                return await invoke(fn, args, kwargs, ctx, self.pool, limit)
            except Timeout as exc:
                if call.deadline is None or time.time() < call.deadline - 0.05:
                    raise  # its method's timeout, not its deadline
                raise _past_deadline(call, "running", exc.details) from None

        key = (call.session, call.agent)
        # a session's calls of an agent with state (managed, or kept by a stateful instance)
        # run one at a time, in the order they came, as on the stack
        turn = (self._state_locks.setdefault(key, asyncio.Lock())
                if call.session and (spec.uses_state or spec.stateful) else None)
        async with contextlib.AsyncExitStack() as held:
            async with _until_deadline(call, "queued"):
                if turn is not None:
                    await held.enter_async_context(turn)
                await held.enter_async_context(self._slots[call.agent])
            if not (spec.uses_state and call.session):
                return await run()
            blob, version = self._state.get(key, (pack({}), 0))
            ctx.state = CallState(unpack(blob), version)
            value = await run()
            if ctx.state.changed():  # committed only when the call succeeded
                self._state[key] = (pack(ctx.state.values), version + 1)
            return value

    async def run(self, workflow: str, input: dict[str, Any] | None = None, *,
                  session: str | None = None) -> Any:
        """Run a workflow to its end: its value, or its error raised as a `NalarError`."""
        wf = self.app.workflows.get(workflow)
        if wf is None:
            raise NotFound(f"workflow {workflow!r} does not exist",
                           details={"available": sorted(self.app.workflows)})
        if not isinstance(input, dict | None):
            raise InvalidInput("input must be a JSON object")
        root = CallSpec(run=uuid.uuid4().hex, future=ROOT_FUTURE,
                        session=session or uuid.uuid4().hex, agent=DRIVER_AGENT,
                        method=workflow, kwargs=self._validated(wf, input or {}),
                        created_at=time.time())
        call = CallSpec.decode(encode_call(root))
        ctx = context_for(self, call, 1)
        ctx.ledger, ctx.instance = self.ledger, "local.driver"
        try:
            value = await invoke(wf.fn, call.args, call.kwargs, ctx, self.driver_pool)
        except Exception as exc:
            raise as_error(exc, call) from None
        status, data = encode_result(value=value)
        return FutureResult(call.run, ROOT_FUTURE, data, {H.STATUS: status}).value()

    def _validated(self, wf: WorkflowSpec, input: dict[str, Any]) -> dict[str, Any]:
        """The input checked against the workflow's signature and converted to its annotated
        types, as the gateway does (`nalar.inputs`): the same input gives the same
        arguments, or the same `InvalidInput` naming the fields, in both modes."""
        model = self._inputs.get(wf.name)
        if model is None:
            model = self._inputs[wf.name] = input_model(wf)
        return validate_input(model, input)


def _time_left(timeout: float | None, deadline: float | None) -> float | None:
    """How long a call may run: its method's timeout, cut short by its deadline."""
    if deadline is None:
        return timeout
    left = max(0.001, deadline - time.time())
    return left if timeout is None else min(timeout, left)


def _past_deadline(call: CallSpec, where: str, details: Mapping[str, Any] | None = None
                   ) -> Timeout:
    return Timeout(f"call {call.agent}.{call.method} passed its deadline while {where} in "
                   "local mode", details={**(details or {}), "future": call.future,
                                          "stuck": where, "deadline": call.deadline})


@contextlib.asynccontextmanager
async def _until_deadline(call: CallSpec, where: str) -> AsyncIterator[None]:
    """Wait inside the block until the call's deadline at most, then fail it with `Timeout`
    (`where` says what it was waiting for)."""
    if call.deadline is None:
        yield
        return
    try:
        async with asyncio.timeout(max(0.0, call.deadline - time.time())):
            yield
    except TimeoutError:
        raise _past_deadline(call, where) from None


async def run_local(app_dir: str, workflow: str, input: dict[str, Any] | None = None, *,
                    session: str | None = None, time_scale: float | None = None,
                    engine: Any = None) -> Any:
    """Run a workflow in this process on `engine`, else the one `NALAR_LLM_*` describes, as
    an agent host builds it (`time_scale`, given, replaces `NALAR_LLM_TIME_SCALE`)."""
    app = load_app(app_dir)
    if engine is None:
        settings = LLMSettings()
        if time_scale is not None:
            settings = settings.model_copy(update={"time_scale": time_scale})
        engine = build_engine(settings)
    async with LocalRuntime(app, engine=engine) as rt:
        return await rt.run(workflow, input, session=session)
