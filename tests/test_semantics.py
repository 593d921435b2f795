"""One semantic suite, two runtimes: each test runs workflows of the test app in local mode
(`LocalRuntime`, in this process) and on a stack (one node as real processes, driven over
HTTP) and expects the same outcome: values and futures, dependencies, typed errors, managed
state, retries and cancellation.

A test talks to a `Backend`, never to a runtime: `run` returns a run's value or raises the
typed `NalarError` it ended with, on both. Where the two legitimately differ (local mode has no
cancellation API), the local param is skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn, Protocol

import httpx
import pytest
import redis.asyncio as aioredis
from e2e_stack import BASIC_APP, Services, one_node
from nalar.app import App, load_app
from nalar.local import LocalRuntime
from nalar_common.errors import (
    AgentError,
    Cancelled,
    Conflict,
    DependencyFailed,
    InvalidInput,
    NalarError,
    NotFound,
    Timeout,
    Unavailable,
)
from nalar_common.testing import wait_until

WAIT_S = 60  # a run's upper bound; every run here takes well under a second


class Backend(Protocol):
    name: str

    async def run(self, workflow: str, input: dict[str, Any] | None = None, *,
                  session: str | None = None) -> Any:
        """The run's value, or the typed error it ended with raised."""

    async def start(self, workflow: str, input: dict[str, Any] | None = None) -> str:
        """Start a run and return its id without waiting."""

    async def cancel(self, run: str) -> None: ...

    async def outcome(self, run: str) -> Any:
        """Wait for a started run to end: its value, or its error raised."""

    async def outcomes(self, run: str) -> dict[str, str]:
        """Each future of a run: the code of its error, or its status ("pending",
        "succeeded")."""

    async def counter(self, key: str) -> int:
        """The external counter `agents.durable.bump` counts up under `key`."""


class LocalBackend:
    name = "local"
    NO_CANCEL = "local mode has no cancellation API: LocalRuntime.run runs a workflow to its end"

    def __init__(self, rt: LocalRuntime) -> None:
        self.rt = rt

    async def run(self, workflow: str, input: dict[str, Any] | None = None, *,
                  session: str | None = None) -> Any:
        return await self.rt.run(workflow, input, session=session)

    def _unsupported(self) -> NoReturn:
        pytest.skip(self.NO_CANCEL)

    async def start(self, workflow: str, input: dict[str, Any] | None = None) -> str:
        self._unsupported()

    async def cancel(self, run: str) -> None:
        self._unsupported()

    async def outcome(self, run: str) -> Any:
        self._unsupported()

    async def outcomes(self, run: str) -> dict[str, str]:
        self._unsupported()

    async def counter(self, key: str) -> int:
        self._unsupported()


class StackBackend:
    name = "stack"

    def __init__(self, http: httpx.AsyncClient, redis: aioredis.Redis) -> None:
        self.http, self.redis = http, redis

    async def run(self, workflow: str, input: dict[str, Any] | None = None, *,
                  session: str | None = None) -> Any:
        body: dict[str, Any] = {"input": input or {}}
        if session is not None:
            body["session_id"] = session
        r = await self.http.post(f"/v1/workflows/{workflow}/runs", params={"wait": WAIT_S},
                                 json=body)
        if r.status_code >= 400:  # refused before it started: the error is the answer
            raise NalarError.from_wire(r.json()["error"])
        assert r.status_code == 200, f"not finished in {WAIT_S} s: {r.text}"
        return _value(r.json())

    async def start(self, workflow: str, input: dict[str, Any] | None = None) -> str:
        r = await self.http.post(f"/v1/workflows/{workflow}/runs", json={"input": input or {}})
        assert r.status_code == 202, r.text
        return str(r.json()["run_id"])

    async def cancel(self, run: str) -> None:
        r = await self.http.post(f"/v1/runs/{run}/cancel")
        if r.status_code != 202:
            raise NalarError.from_wire(r.json()["error"])

    async def outcome(self, run: str) -> Any:
        async def view() -> dict[str, Any]:
            return (await self.http.get(f"/v1/runs/{run}")).json()  # type: ignore[no-any-return]

        return _value(await wait_until(
            view, what=f"run {run} finished", timeout=WAIT_S,
            until=lambda v: v["status"] in ("succeeded", "failed", "cancelled")))

    async def outcomes(self, run: str) -> dict[str, str]:
        futures = (await self.http.get(f"/v1/runs/{run}/futures")).json()["futures"]
        return {f["future"]: (f.get("error") or {}).get("code") or f["status"]
                for f in futures}

    async def counter(self, key: str) -> int:
        return int(await self.redis.get(f"test:counter:{key}") or 0)


def _value(view: dict[str, Any]) -> Any:
    if view["status"] == "succeeded":
        return view["result"]
    raise NalarError.from_wire(view["error"])


@pytest.fixture(scope="module")
def basic_app() -> App:
    return load_app(BASIC_APP)


@pytest.fixture(scope="module")
def node(nats_url: str, redis_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One stack for the whole module: a local controller, an agent host, a state store and
    a gateway."""
    with one_node(BASIC_APP, nats_url, redis_url, tmp_path_factory.mktemp("semantics")) as svc:
        yield svc


@pytest.fixture(params=["local", pytest.param("stack", marks=pytest.mark.e2e)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "local":
        async with LocalRuntime(request.getfixturevalue("basic_app")) as rt:
            yield LocalBackend(rt)
        return
    svc: Services = request.getfixturevalue("node")  # started only when a stack test runs
    async with httpx.AsyncClient(base_url=svc.url, timeout=WAIT_S + 30) as http:
        redis = aioredis.Redis.from_url(svc.redis_url)
        try:
            yield StackBackend(http, redis)
        finally:
            await redis.aclose()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- values and futures ---------------------------------------------------------------------

VALUES = ["", None, 0, False, 1.5, "unicode ✓", "0123456789abcdef0123456789abcdef", [], {},
          {"nested": [1, "", None]}]


async def test_values_round_trip_unchanged(backend: Backend) -> None:
    for wf in ("echo", "aecho"):
        for value in VALUES:
            got = await backend.run(wf, {"value": value})
            assert got == value and type(got) is type(value), (wf, value, got)


@pytest.mark.parametrize("workflow", ["futures_api", "afutures_api"])
async def test_futures_waited_out_of_order_twice_and_shared(backend: Backend,
                                                            workflow: str) -> None:
    assert await backend.run(workflow, {"n": 3}) == {
        "ids": ["1", "2", "3"], "values": [0, 2, 4], "again": 4, "available": True,
        "shared": [1, 2]}


@pytest.mark.parametrize("workflow", ["context_in_threads", "context_in_tasks"])
async def test_run_and_session_ids_in_threads_and_tasks(backend: Backend, workflow: str) -> None:
    session = unique("ctx")
    out = await backend.run(workflow, {"n": 3}, session=session)
    assert out["session"] == session
    assert out["seen"] == [{"run": out["run"], "session": session}] * 3


@pytest.mark.parametrize("use_async", [False, True])
async def test_calls_made_inside_agent_methods(backend: Backend, use_async: bool) -> None:
    assert await backend.run("relay", {"x": 5, "use_async": use_async}) == {
        "value": 10, "future": "1_1"}


# -- dependencies ------------------------------------------------------------------------------

async def test_futures_nested_in_arguments_are_dependencies(backend: Backend) -> None:
    assert await backend.run("chain", {"a": 2, "b": 3}) == 31  # in a list and a dict
    assert await backend.run("nested", {"a": 2}) == {
        "list": [2, [3, {"deep": "deep"}]], "map": {"k": 2}, "tuple": [3, 3], "plain": None}


async def test_a_failed_dependency_fails_the_call_that_takes_it(backend: Backend) -> None:
    with pytest.raises(DependencyFailed) as direct:
        await backend.run("fail_dependency", {"message": "up"})
    assert direct.value.details["dependency"] == "1"
    assert direct.value.details["cause"]["code"] == "agent_error"
    assert "ValueError: up" in direct.value.details["cause"]["message"]
    with pytest.raises(DependencyFailed) as nested:  # deep inside a dict in a list
        await backend.run("nested_failure", {"message": "deep"})
    assert nested.value.details["dependency"] == "2"
    assert nested.value.details["cause"]["code"] == "agent_error"
    with pytest.raises(DependencyFailed) as chained:  # along a chain: the nearest link
        await backend.run("transitive_failure", {"message": "far"})
    assert chained.value.details["dependency"] == "2"
    assert chained.value.details["cause"]["code"] == "dependency_failed"
    assert chained.value.details["cause"]["details"]["dependency"] == "1"


# -- typed errors ------------------------------------------------------------------------------

async def test_agent_error_carries_type_place_and_traceback(backend: Backend) -> None:
    with pytest.raises(AgentError) as info:
        await backend.run("fail", {"message": "bad ticker"})
    err = info.value
    assert err.error_code == "agent_error" and not err.retryable
    assert "ValueError: bad ticker" in err.message
    assert err.details["type"] == "ValueError"
    assert (err.details["agent"], err.details["method"], err.details["future"]) == (
        "Failing", "boom", "1")
    assert "raise ValueError(message)" in err.details["traceback"]


# kind of failure -> (type, code, retryable, agent, method, future) of the error
FAILURES: dict[str, tuple[type[NalarError], str, bool, str | None, str | None, str | None]] = {
    "agent_error": (AgentError, "agent_error", False, "Failing", "boom", "1"),
    "dependency_failed": (DependencyFailed, "dependency_failed", False, "Echo", "echo", "2"),
    "timeout": (Timeout, "timeout", False, "Limited", "hang", "1"),
    "unavailable": (Unavailable, "unavailable", True, "Flaky", "never", "1"),
    "invalid_input": (InvalidInput, "invalid_input", False, "Echo", "add", "1"),
    "not_found": (NotFound, "not_found", False, "Echo", "nope", "1"),
    # made by `encode_result` after the call returned, on both: it does not say where
    "unserialisable": (AgentError, "agent_error", False, None, None, None),
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
async def test_a_failed_call_raises_its_typed_error_in_the_driver(
        backend: Backend, kind: str) -> None:
    cls, code, retryable, agent, method, future = FAILURES[kind]
    assert await backend.run("failure", {"kind": kind, "catch": True}) == {
        "type": cls.__name__, "code": code, "retryable": retryable, "agent": agent,
        "method": method, "future": future}
    with pytest.raises(cls) as uncaught:  # not caught: the run ends with that error
        await backend.run("failure", {"kind": kind})
    assert uncaught.value.error_code == code and uncaught.value.retryable is retryable
    assert uncaught.value.details["future"] == (future or "0")  # else the driver's


async def test_the_workflows_own_exception_is_an_agent_error(backend: Backend) -> None:
    with pytest.raises(AgentError) as info:
        await backend.run("failure", {"kind": "driver"})
    assert "ValueError: the workflow's own code failed" in info.value.message
    assert (info.value.details["agent"], info.value.details["future"]) == ("_driver", "0")


async def test_unknown_workflow_and_bad_input(backend: Backend) -> None:
    with pytest.raises(NotFound, match="nope"):
        await backend.run("nope", {})
    with pytest.raises(InvalidInput, match="label"):
        await backend.run("typed", {"count": 1})  # missing
    with pytest.raises(InvalidInput, match="extra"):
        await backend.run("typed", {"count": 1, "label": "x", "extra": 1})  # unknown
    with pytest.raises(InvalidInput, match="count"):
        await backend.run("typed", {"count": "many", "label": "x"})  # not an int
    assert await backend.run("typed", {"count": 3, "label": "x"}) == "x:3"


async def test_input_is_converted_to_the_annotated_types(backend: Backend) -> None:
    got = await backend.run("nap", {"seconds": 0})  # `seconds: float`
    assert got == 0 and type(got) is float


async def test_per_method_timeouts_end_the_call_not_the_run(backend: Backend) -> None:
    assert await backend.run("timeouts", {}) == {
        "quick": "ok", "hang": "timeout", "hang_sync": "timeout"}


async def test_a_call_past_its_stub_timeout_is_a_timeout(backend: Backend) -> None:
    with pytest.raises(Timeout, match="deadline") as info:
        await backend.run("slow_call", {"seconds": 3, "call_timeout": 0.5})
    assert (info.value.details["agent"], info.value.details["method"]) == ("Echo", "slow")


# -- managed state -----------------------------------------------------------------------------

async def test_managed_state_lives_per_session_across_runs(backend: Backend) -> None:
    s, other = unique("s"), unique("other")
    assert await backend.run("count", {"by": 2, "times": 2}, session=s) == {
        "n": 4, "history": [2, 2]}
    assert await backend.run("count", {"by": 5}, session=s) == {"n": 9, "history": [2, 2, 5]}
    assert await backend.run("count", {"by": 1}, session=other) == {"n": 1, "history": [1]}


async def test_changes_of_a_failed_call_are_discarded(backend: Backend) -> None:
    s = unique("fail")
    await backend.run("count", {"by": 3}, session=s)
    with pytest.raises(AgentError, match="discarded"):
        await backend.run("count_fail", {"by": 1}, session=s)
    assert await backend.run("count", {"by": 0}, session=s) == {"n": 3, "history": [3, 0]}


async def test_concurrent_calls_of_a_session_lose_no_update(backend: Backend) -> None:
    assert (await backend.run("count_parallel", {"n": 8}, session=unique("par")))["n"] == 8


async def test_a_stateful_agent_takes_a_sessions_calls_in_order(backend: Backend) -> None:
    s = unique("conv")
    first = await backend.run("converse", {"n": 6}, session=s)
    assert [t["turns"] for t in first] == [list(range(i + 1)) for i in range(6)]
    assert len({t["pid"] for t in first}) == 1  # one instance
    again = await backend.run("converse", {"n": 2}, session=s)
    assert again[-1]["turns"] == [*range(6), 0, 1]
    assert {t["pid"] for t in again} == {first[0]["pid"]}


# -- retries -----------------------------------------------------------------------------------

async def test_retry_policies(backend: Backend) -> None:
    assert await backend.run("retry_until", {"succeed_on": 3}) == {"attempt": 3}
    assert await backend.run("retry_until", {"succeed_on": 2, "error": "connection",
                                             "method": "on_connection"}) == {"attempt": 2}
    assert await backend.run("retry_timeout", {"ok_on": 2}) == 2
    with pytest.raises(Unavailable, match="attempt 4"):  # attempts=4, then it fails
        await backend.run("retry_until", {"succeed_on": 10})
    with pytest.raises(Timeout):
        await backend.run("retry_timeout", {"ok_on": 5})  # attempts=3
    with pytest.raises(AgentError, match="attempt 1"):  # ValueError: not retried
        await backend.run("retry_until", {"succeed_on": 3, "error": "value"})
    with pytest.raises(AgentError, match="attempt 1"):
        await backend.run("retry_until", {"succeed_on": 2, "error": "value",
                                          "method": "on_connection"})  # not in its `on`
    with pytest.raises(Unavailable, match="does not retry"):
        await backend.run("never_retried", {})


async def test_a_once_block_is_not_repeated_by_retries(backend: Backend) -> None:
    out = await backend.run("charge", {"key": unique("charge"), "succeed_on": 3})
    assert {k: out[k] for k in ("attempt", "charged", "counter", "tries")} == {
        "attempt": 3, "charged": 1, "counter": 1, "tries": 0}
    assert out["key"].endswith(".1.charge")


async def test_each_call_of_a_non_idempotent_tool_is_its_own_effect(backend: Backend) -> None:
    first, second = await backend.run("pay_twice", {"key": unique("pay")})
    assert (first["counter"], second["counter"]) == (1, 2)
    assert first["idempotency_key"].endswith(".1.Payments.pay")
    assert second["idempotency_key"].endswith(".2.Payments.pay")


# -- cancellation ------------------------------------------------------------------------------

async def test_cancel_stops_running_calls_and_fails_waiting_ones(backend: Backend) -> None:
    key = unique("hold")
    run = await backend.start("hold", {"key": key, "seconds": WAIT_S})
    await wait_until(lambda: backend.counter(key), until=lambda n: n == 2, timeout=30,
                     what="both holding calls running")
    await backend.cancel(run)
    with pytest.raises(Cancelled):
        await backend.outcome(run)
    # the async call cancelled, the sync one told (it returns, its result is not kept), the
    # call waiting on a dependency failed: each long before its WAIT_S
    outcomes = await wait_until(lambda: backend.outcomes(run), timeout=30,
                                until=lambda o: len(o) == 4 and "pending" not in o.values(),
                                what="every future of the run resolved")
    assert outcomes == {"0": "cancelled", "1": "cancelled", "2": "cancelled", "3": "cancelled"}


async def test_only_a_running_run_can_be_cancelled(backend: Backend) -> None:
    with pytest.raises(NotFound):
        await backend.cancel("0123456789abcdef0123456789abcdef")
    done = await backend.start("typed", {"count": 1, "label": "x"})
    assert await backend.outcome(done) == "x:1"
    with pytest.raises(Conflict):
        await backend.cancel(done)
    assert await backend.outcome(done) == "x:1"  # still its own outcome
