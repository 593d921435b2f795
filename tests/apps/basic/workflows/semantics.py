"""Workflows of the semantic suite (tests/test_semantics.py), which runs each of them in local
mode and on the stack and expects the same outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nalar
from agents.basic import Echo, Failing, Limited
from agents.durable import Flaky
from agents.semantics import Holder, Patient, Relay


@nalar.workflow
def futures_api(n: int = 3) -> dict[str, object]:
    """Futures waited on out of order and twice, and one future passed to two calls."""
    e = nalar.stub(Echo)
    futs = [e.add(i, i) for i in range(n)]
    backwards = [f.value(timeout=30) for f in reversed(futs)]
    shared = [e.add(futs[0], 1), e.add(futs[0], 2)]
    return {"ids": [f.future for f in futs], "values": backwards[::-1],
            "again": futs[-1].value(timeout=30), "available": all(f.available() for f in futs),
            "shared": [f.value(timeout=30) for f in shared]}


@nalar.workflow
async def afutures_api(n: int = 3) -> dict[str, object]:
    e = nalar.stub(Echo)
    futs = [e.add(i, i) for i in range(n)]
    values = await asyncio.gather(*futs)
    shared = [e.add(futs[0], 1), e.add(futs[0], 2)]
    return {"ids": [f.future for f in futs], "values": list(values), "again": await futs[-1],
            "available": all(f.available() for f in futs),
            "shared": [await f for f in shared]}


@nalar.workflow
def relay(x: int, use_async: bool = False) -> dict[str, object]:
    """An agent method that calls another agent and waits for it."""
    r = nalar.stub(Relay)
    return (r.adouble(x) if use_async else r.double(x)).value(timeout=30)  # type: ignore[no-any-return]


@nalar.workflow
def nested(a: int) -> object:
    """Futures nested in lists, dicts and tuples, and as keyword arguments, are resolved in
    place (a tuple arrives as a list)."""
    e = nalar.stub(Echo)
    f1, f2, f3 = e.add(a, 0), e.add(a, 1), e.aecho("deep")
    return e.echo(value={"list": [f1, [f2, {"deep": f3}]], "map": {"k": f1},
                         "tuple": (f2, 3), "plain": None}).value(timeout=30)


@nalar.workflow
def nested_failure(message: str) -> object:
    """A failed future deep inside an argument fails the call that takes it."""
    e = nalar.stub(Echo)
    ok, bad = e.add(1, 1), nalar.stub(Failing).boom(message)
    return e.echo({"x": [ok, {"y": bad}]}).value(timeout=30)


@nalar.workflow
def transitive_failure(message: str) -> object:
    """A failure passed along a chain: each later call fails on the one before it."""
    e = nalar.stub(Echo)
    bad = nalar.stub(Failing).boom(message)
    return e.echo([e.echo(bad)]).value(timeout=30)


_FAILURES: dict[str, Callable[[], nalar.Future[Any]]] = {
    "agent_error": lambda: nalar.stub(Failing).boom("bad"),
    "dependency_failed": lambda: nalar.stub(Echo).echo(nalar.stub(Failing).boom("up")),
    "timeout": lambda: nalar.stub(Limited).hang(),
    "unavailable": lambda: nalar.stub(Flaky).never(),
    "invalid_input": lambda: nalar.stub(Echo).add(1),  # a missing argument
    "not_found": lambda: nalar.stub("Echo").nope(),  # no such method
    "unserialisable": lambda: nalar.stub(Failing).unserialisable(),
}


@nalar.workflow
def failure(kind: str, catch: bool = False) -> dict[str, object] | None:
    """A call that fails with the error of `kind` (or the driver's own code raising, kind
    `driver`): the error raised in the driver, or with `catch` what the driver saw of it."""
    try:
        if kind == "driver":
            raise ValueError("the workflow's own code failed")
        _FAILURES[kind]().value(timeout=30)
    except nalar.NalarError as exc:
        if not catch:
            raise
        return {"type": type(exc).__name__, "code": exc.error_code,
                "retryable": exc.retryable, "agent": exc.details.get("agent"),
                "method": exc.details.get("method"), "future": exc.details.get("future")}
    return None


@nalar.workflow
def retry_timeout(ok_on: int) -> int:
    """A call that ran past its method's timeout, tried again by a policy that retries
    `timeout`."""
    return nalar.stub(Patient).late_then_ok(ok_on).value(timeout=30)  # type: ignore[no-any-return]


@nalar.workflow
async def hold(key: str, seconds: float = 60) -> list[object]:
    """Running calls (async and sync) and one waiting on a dependency, for cancellation."""
    h = nalar.stub(Holder)
    asleep, spinning = h.sleep(key, seconds), h.spin(key, seconds)
    after = nalar.stub(Echo).echo(asleep)
    return [await asleep, await spinning, await after]
