"""Workflows of the test app."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

import nalar
from agents.basic import Echo, Failing


@nalar.workflow
def echo(value: object = None) -> object:
    """Sync driver: one call, value returned unchanged."""
    return nalar.stub(Echo).echo(value).value(timeout=30)


@nalar.workflow
async def aecho(value: object = None) -> object:
    return await nalar.stub(Echo).aecho(value)


@nalar.workflow
def chain(a: int, b: int) -> int:
    """Futures passed into calls, also nested in lists and dicts, are dependencies."""
    e = nalar.stub(Echo)
    s1 = e.add(a, b)
    s2 = e.add(s1, 1)
    return e.total([s1, s2, 10], {"x": s1, "y": 5}).value(timeout=30)


@nalar.workflow
def fail(message: str) -> None:
    return nalar.stub(Failing).boom(message).value(timeout=30)


@nalar.workflow
def fail_dependency(message: str) -> object:
    """A call whose argument future failed never runs; the error says which dependency."""
    bad = nalar.stub(Failing).boom(message)
    return nalar.stub(Echo).echo(bad).value(timeout=30)


@nalar.workflow
def unserialisable() -> object:
    return nalar.stub(Failing).unserialisable().value(timeout=30)


@nalar.workflow
def context_in_threads(n: int = 4) -> dict[str, object]:
    """Stub calls from worker threads and the ids they see."""
    e = nalar.stub(Echo)
    with ThreadPoolExecutor(n) as pool:
        futs = [pool.submit(contextvars.copy_context().run, e.whoami) for _ in range(n)]
        seen = [f.result().value(timeout=30) for f in futs]
    return {"run": nalar.current_run_id(), "session": nalar.current_session_id(), "seen": seen}


@nalar.workflow
async def context_in_tasks(n: int = 4) -> dict[str, object]:
    e = nalar.stub(Echo)
    seen = await asyncio.gather(*[asyncio.create_task(_who(e)) for _ in range(n)])
    return {"run": nalar.current_run_id(), "session": nalar.current_session_id(),
            "seen": list(seen)}


async def _who(e: nalar.Stub) -> object:
    return await e.whoami()


@nalar.workflow
def typed(count: int, label: str) -> str:
    return f"{label}:{count}"


@nalar.workflow
def nap(seconds: float) -> float:
    return nalar.stub(Echo).slow(seconds).value(timeout=60)


@nalar.workflow
async def noops(n: int = 100) -> int:
    from agents.basic import Noop

    stub = nalar.stub(Noop)
    futs = [stub.noop() for _ in range(n)]
    for f in futs:
        await f
    return n


@nalar.workflow
def echo_then_nap(seconds: float) -> list[object]:
    """A finished call, then a slow one: a re-run driver must find the first in the stream."""
    e = nalar.stub(Echo)
    first = e.echo("first").value(timeout=60)
    return [first, e.slow(seconds).value(timeout=60)]


@nalar.workflow
def big_pair(n: int) -> int:
    """Two results that each fit a message but not together as one call's arguments."""
    e = nalar.stub(Echo)
    return e.size(e.make(n), e.make(n)).value(timeout=60)


@nalar.workflow
def count(by: int = 1, times: int = 1) -> dict[str, object]:
    """Calls of one session on a stateful agent: each sees what the previous one left."""
    from agents.stateful import Counter

    c = nalar.stub(Counter)
    for _ in range(times):
        c.incr(by).value(timeout=30)
    return c.read().value(timeout=30)  # type: ignore[no-any-return]


@nalar.workflow
def count_fail(by: int = 1) -> object:
    from agents.stateful import Counter

    return nalar.stub(Counter).incr_then_fail(by).value(timeout=30)


@nalar.workflow
async def count_parallel(n: int = 8) -> dict[str, object]:
    """Concurrent calls of one session on one agent's state are serialised: none is lost."""
    from agents.stateful import Counter

    c = nalar.stub(Counter)
    for f in [c.aincr(1) for _ in range(n)]:
        await f
    return await c.read()  # type: ignore[no-any-return]


@nalar.workflow
def approve(amount: int) -> dict[str, object]:
    """Human in the loop: a call, then the driver waits (without a worker) for a signal."""
    e = nalar.stub(Echo)
    quote = e.add(amount, 1).value(timeout=30)
    decision = nalar.signal("approval").value()
    note = e.echo(decision).value(timeout=30)
    return {"quote": quote, "decision": note}


@nalar.workflow
async def approve_async(amount: int, timeout: float = 0) -> dict[str, object]:
    e = nalar.stub(Echo)
    quote = await e.add(amount, 1)
    try:
        decision = await nalar.signal("approval", timeout=timeout or None)
    except nalar.Timeout:
        decision = "timed out"
    return {"quote": quote, "decision": decision}


@nalar.workflow
async def long_job(seconds: float = 30) -> list[object]:
    """Running (async and sync) and queued calls, for cancellation."""
    e = nalar.stub(Echo)
    sleeper = e.sleep(seconds)
    spinner = e.spin(seconds)
    after = e.echo(sleeper)  # waits for its dependency
    return [await sleeper, await spinner, await after]


@nalar.workflow
async def timeouts() -> dict[str, object]:
    """Per-method timeouts: each call ends with a `Timeout` error, the driver goes on."""
    from agents.basic import Limited

    lim = nalar.stub(Limited)
    out: dict[str, object] = {"quick": await lim.quick()}
    for name in ("hang", "hang_sync"):
        try:
            await getattr(lim, name)()
        except nalar.Timeout as exc:
            out[name] = exc.error_code
    return out


@nalar.workflow
async def converse(n: int = 6) -> list[object]:
    """n turns sent at once, without waiting: a stateful agent takes them in order."""
    from agents.stateful import Conversation

    c = nalar.stub(Conversation)
    futures = [c.say(i) for i in range(n)]
    return [await f for f in futures]


@nalar.workflow
def write(topic: str) -> dict[str, object]:
    from agents.basic import Writer

    return nalar.stub(Writer).write(topic).value(timeout=60)  # type: ignore[no-any-return]
