"""The runtime behind stubs: turns a call into a future on JetStream and resolves it.

One per process (gateway, agent host). `submit` is thread-safe and returns at once: the id,
arguments and dependencies are fixed in the caller's thread (deterministic ids), and the
publish runs on the event loop, subscribing to the run's results *before* the call is
published so that no result can be missed without a backstop read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any

from nalar_common.bus import Bus
from nalar_common.calls import CallSpec, encode_result, publish_result
from nalar_common.cluster import ClusterView
from nalar_common.envelope import FutureRef, ValueRef
from nalar_common.errors import InvalidInput, NalarError, NoInstance, Unavailable
from nalar_common.futures import FutureResult, FutureWaiter
from nalar_common.journal import Event, record
from nalar_common.logging import get_logger
from nalar_common.subjects import DRIVER_AGENT, ROOT_FUTURE, signal_future
from nalar_common.values import HEADROOM, inline_limit, maybe_large, store_for
from nalar_common.values import header as values_header

from nalar.context import CallContext
from nalar.future import Future
from nalar.signals import SignalFuture

log = get_logger(__name__)

PUBLISH_ACK_TIMEOUT_S = 5.0
PUBLISH_RETRY_S = 60.0
NO_INSTANCE_WAIT_S = 30.0


class Runtime:
    def __init__(self, bus: Bus, *, view: ClusterView | None = None,
                 waiter: FutureWaiter | None = None, engine: Any = None) -> None:
        self.bus = bus
        self.view = view or ClusterView(bus)
        self.waiter = waiter or FutureWaiter(bus)
        self.engine = engine
        self.values = store_for(bus)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._started = asyncio.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "Runtime.run() has not started"
        return self._loop

    async def run(self) -> None:
        """Own the publishing tasks and the cluster view until cancelled."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._started.set()
            await self.view.run()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self._started.wait()
        await self.view.wait_ready(timeout)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the runtime's task group (from the loop or from any thread); the
        coroutines given here handle their own errors."""
        tg = self._tg
        assert tg is not None, "Runtime.run() has not started"
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            tg.create_task(coro)
        else:
            self.loop.call_soon_threadsafe(tg.create_task, coro)

    # -- calls -------------------------------------------------------------------
    def submit(self, ctx: CallContext, agent: str, method: str, args: Sequence[Any],
               kwargs: Mapping[str, Any], *, priority: int | None = None,
               deadline: float | None = None) -> Future[Any]:
        """Create the future for `agent.method(*args, **kwargs)` in the run of `ctx`; its
        deadline is the run's, or `deadline` if that is sooner."""
        fid = ctx.next_future_id()
        deps: dict[str, None] = {}
        wire_args = to_wire(list(args), ctx.run, deps)
        wire_kwargs = to_wire(dict(kwargs), ctx.run, deps)
        spec = CallSpec(run=ctx.run, future=fid, session=ctx.session, agent=agent, method=method,
                        args=wire_args, kwargs=wire_kwargs, deps=tuple(deps), parent=ctx.future,
                        priority=ctx.priority if priority is None else priority,
                        attempt=1, deadline=sooner(ctx.deadline, deadline),
                        created_at=time.time())
        # a large call is packed on the way out, off the event loop
        refs: list[ValueRef] = []  # references it passes on (a signal's value, say)
        payload = None if maybe_large((wire_args, wire_kwargs)) else encode_call(spec, refs)
        fut: Future[Any] = Future(ctx.run, fid, agent, method, self.loop, self.values)
        self._spawn(self._publish(fut, spec, payload, check_stored=ctx.attempt > 1,
                                  refs=refs))
        return fut

    async def submit_root(self, *, run: str, session: str, workflow: str,
                          input: dict[str, Any], priority: int = 0,
                          deadline: float | None = None) -> Future[Any]:
        """The driver call of a new run (future `0`); raises NoInstance when nothing can run it."""
        spec = CallSpec(run=run, future=ROOT_FUTURE, session=session, agent=DRIVER_AGENT,
                        method=workflow, kwargs=input, priority=priority, deadline=deadline,
                        created_at=time.time())
        node = self.view.choose_node(DRIVER_AGENT, session)
        if node is None:
            raise NoInstance("no agent host is running: cannot start a workflow driver")
        fut: Future[Any] = Future(run, ROOT_FUTURE, DRIVER_AGENT, workflow, self.loop,
                                  self.values)
        await self._publish(fut, spec, encode_call(spec), check_stored=False, node=node,
                            raise_errors=True)
        return fut

    def signal(self, ctx: CallContext, name: str, timeout: float | None) -> Future[Any]:
        """The future of signal `name` of this run (see `nalar.signals`)."""
        try:
            fid = signal_future(name)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        fut: SignalFuture[Any] = SignalFuture(ctx.run, fid, name, self.loop, self.values)
        self._spawn(self._declare_signal(fut, name, timeout))
        return fut

    async def _declare_signal(self, fut: SignalFuture[Any], name: str,
                              timeout: float | None) -> None:
        """Look the signal up; if it has not come, declare it in the journal (the gateway
        accepts only declared signals; the state store enforces the timeout)."""
        try:
            await self.waiter.watch(fut.run, fut.future, fut._resolve, check_stored=True)
            if not fut.available():
                await record(self.bus, fut.run, Event.SIGNAL, {
                    "name": name, "future": fut.future, "timeout": timeout,
                    "deadline": time.time() + timeout if timeout else None,
                }, acked=True, msg_id=f"{fut.run}.signal.{name}")
        except Exception as exc:
            log.warning("signal.declare_failed", run_id=fut.run, signal=name, error=str(exc))
        finally:
            fut.looked_up.set()

    def watch(self, run: str, future: str) -> Future[Any]:
        """A `Future` for an existing future id (e.g. a run's result), from any process."""
        fut: Future[Any] = Future(run, future, "", "", self.loop, self.values)
        self._spawn(self._watch(fut))
        return fut

    async def _watch(self, fut: Future[Any]) -> None:
        try:
            await self.waiter.watch(fut.run, fut.future, fut._resolve, check_stored=True)
        except Exception as exc:
            _fail(fut, Unavailable(f"could not watch future {fut.future}: {exc}"))

    async def _publish(self, fut: Future[Any], spec: CallSpec, payload: bytes | None, *,
                       refs: list[ValueRef] | None = None,
                       check_stored: bool, node: str | None = None,
                       raise_errors: bool = False) -> None:
        try:
            await self.waiter.watch(spec.run, spec.future, fut._resolve, check_stored=check_stored)
            if fut.available():
                return  # resolved already (a re-executed driver finds its earlier results)
            node = node or await self._node_for(spec.agent, spec.session)
            headers = spec.headers(self.view.snapshot.revision if self.view.snapshot else None)
            refs = [] if refs is None else refs
            if payload is None:
                payload = await asyncio.to_thread(encode_call, spec, refs)
            limit = inline_limit(self.bus)
            if len(payload) > limit:  # its large arguments go by reference
                args, kwargs, _ = await self.values.externalize_args(
                    spec.run, spec.future, spec.args, spec.kwargs, limit)
                spec, refs = replace(spec, args=args, kwargs=kwargs), []
                payload = await asyncio.to_thread(encode_call, spec, refs)
                if len(payload) > self.bus.nc.max_payload - HEADROOM:
                    raise InvalidInput(
                        f"call {spec.agent}.{spec.method} takes {len(payload)} bytes with its "
                        "large arguments kept by reference: arguments that hold futures stay "
                        "inline; pass the large part as an argument of its own",
                        details={"agent": spec.agent, "method": spec.method,
                                 "size": len(payload)})
            headers.update(values_header(refs))
            if await self._publish_call(self.bus.names.call(node, spec.agent), payload,
                                        headers):
                # published before (a driver re-run without knowing it): its result may be
                # stored already, before this watch began
                await self.waiter.check(spec.run, spec.future)
            await record(self.bus, spec.run, Event.FUTURE_CREATED, {
                "future": spec.future, "agent": spec.agent, "method": spec.method,
                "deps": list(spec.deps), "parent": spec.parent, "session": spec.session,
                "node": node, "created_at": spec.created_at})
        except Exception as exc:
            if raise_errors:
                raise
            err = exc if isinstance(exc, NalarError) else Unavailable(
                f"could not publish call: {exc}", details={"type": type(exc).__name__})
            log.warning("future.publish_failed", run_id=spec.run, future_id=spec.future,
                        error=str(exc))
            await self._resolve_failed(fut, spec, err)

    async def _node_for(self, agent: str, session: str) -> str:
        """The node to send a call to; with no live instance anywhere (hosts restarting,
        their heartbeats briefly gone after a NATS restart) wait for one, up to
        `NO_INSTANCE_WAIT_S`, as a local controller waits for an instance."""
        give_up = time.monotonic() + NO_INSTANCE_WAIT_S
        while True:
            node = self.view.choose_node(agent, session)
            if node is not None:
                return node
            left = give_up - time.monotonic()
            if left <= 0:
                raise NoInstance(f"no instance of agent {agent!r} came up within "
                                 f"{NO_INSTANCE_WAIT_S:.0f}s", details={"agent": agent})
            # woken by the next heartbeat that changes the view; looked at again within a
            # second in any case (a change between the look and the wait is not missed)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, left)):
                    await self.view.wait_changed()

    async def _publish_call(self, subject: str, payload: bytes, headers: dict[str, str]) -> bool:
        """Publish a call and wait for the stream to store it; while NATS is away (a restart)
        try again with the same message id, which the stream stores once, for up to
        `PUBLISH_RETRY_S`. True when the stream had it already (a duplicate)."""
        give_up = time.monotonic() + PUBLISH_RETRY_S
        delay = 0.2
        while True:
            try:
                ack = await self.bus.js.publish_async(subject, payload, headers=headers)
                async with asyncio.timeout(PUBLISH_ACK_TIMEOUT_S):
                    stored = await ack
                return bool(getattr(stored, "duplicate", False))
            except NalarError:
                raise
            except Exception as exc:
                if time.monotonic() + delay > give_up:
                    raise
                log.warning("future.publish_retry", subject=subject, error=str(exc) or
                            type(exc).__name__, delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _resolve_failed(self, fut: Future[Any], spec: CallSpec, err: NalarError) -> None:
        """Store the failure write-once, so every reader (and a re-executed caller) agrees on
        the outcome even if the call was stored after all; if that fails too, resolve here."""
        try:
            await publish_result(self.bus, spec.headers(), error=err, executor="runtime")
            stored = await self.waiter.get(spec.run, spec.future)
            if stored is not None:
                fut._resolve(stored)
                return
        except Exception:
            pass
        _fail(fut, err)


def sooner(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _fail(fut: Future[Any], err: NalarError) -> None:
    """Resolve a future locally with an error (nothing was, or can be, published for it)."""
    status, data = encode_result(error=err)
    fut._resolve(FutureResult(fut.run, fut.future, data, {"Nalar-Status": status}))


def encode_call(spec: CallSpec, refs: list[ValueRef] | None = None) -> bytes:
    try:
        return spec.encode(refs)
    except TypeError as exc:
        raise InvalidInput(f"argument of {spec.agent}.{spec.method} cannot be sent: {exc}",
                           details={"agent": spec.agent, "method": spec.method}) from exc


def to_wire(value: Any, run: str, deps: dict[str, None]) -> Any:
    """Replace futures (also nested in lists, tuples and dicts) by refs; collect dependencies."""
    if isinstance(value, Future):
        if value.run != run:
            raise InvalidInput(f"future {value.future} belongs to run {value.run}, not {run}")
        deps[value.future] = None
        return FutureRef(value.run, value.future)
    if isinstance(value, list | tuple):
        return [to_wire(v, run, deps) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v, run, deps) for k, v in value.items()}
    return value


__all__ = ["Runtime"]
