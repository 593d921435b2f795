"""SDK core without servers: decorators, app loading, dependency extraction, contexts, futures."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nalar
import pytest
from nalar.app import load_app
from nalar.context import CallContext, NoRunContext, current, enter, leave
from nalar.future import BlockingInEventLoop, Future
from nalar.registry import agent_spec, workflow_spec
from nalar.runtime import to_wire
from nalar_common.calls import encode_result
from nalar_common.envelope import FutureRef
from nalar_common.errors import AgentError, InvalidInput, Timeout
from nalar_common.futures import FutureResult

ROOT = Path(__file__).resolve().parents[3]


def test_agent_and_workflow_decorators() -> None:
    @nalar.agent(concurrency=3, stateful=True)
    class A:
        def m(self, x: int) -> int:
            return x

        async def am(self) -> None: ...

        def _private(self) -> None: ...

    spec = agent_spec(A)
    assert spec is not None and spec.concurrency == 3 and spec.stateful
    assert set(spec.methods) == {"m", "am"} and spec.methods["am"].is_async

    @nalar.workflow
    async def wf(a: int) -> int:
        return a

    w = workflow_spec(wf)
    assert w is not None and w.is_async and list(w.signature.parameters) == ["a"]
    with pytest.raises(ValueError):
        nalar.agent(concurrency=0)


def test_load_example_app() -> None:
    app = load_app(ROOT / "examples" / "financial_analyst")
    assert {"AnalystAgent", "StockAgent", "BondAgent", "MarketResearchAgent", "NewsAgent",
            "SummarizerAgent"} <= set(app.agents)
    assert {"financial_analysis", "compare"} <= set(app.workflows)


def test_load_missing_app_is_clear() -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_app("/nonexistent/app")


def _future(run: str, fid: str, loop: asyncio.AbstractEventLoop | None = None) -> Future[Any]:
    return Future(run, fid, "A", "m", loop or asyncio.new_event_loop())


def test_dependencies_found_nested_in_lists_and_dicts() -> None:
    f1, f2 = _future("r", "1"), _future("r", "2")
    deps: dict[str, None] = {}
    wire = to_wire([f1, {"a": [f2, 3], "b": (f1,)}, "1"], "r", deps)
    assert list(deps) == ["1", "2"]
    assert wire == [FutureRef("r", "1"), {"a": [FutureRef("r", "2"), 3],
                                          "b": [FutureRef("r", "1")]}, "1"]


def test_future_of_another_run_rejected() -> None:
    with pytest.raises(InvalidInput, match="belongs to run"):
        to_wire([_future("other", "1")], "r", {})


def test_stub_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(NoRunContext):
        nalar.stub("Agent").method(1)


def test_future_ids_are_deterministic() -> None:
    root = CallContext(runtime=None, run="r", session="s", future="0")  # type: ignore[arg-type]
    child = CallContext(runtime=None, run="r", session="s", future="3")  # type: ignore[arg-type]
    assert [root.next_future_id() for _ in range(3)] == ["1", "2", "3"]
    assert [child.next_future_id() for _ in range(2)] == ["3_1", "3_2"]


def test_context_in_threads_and_tasks_is_per_call() -> None:
    def ctx(run: str) -> CallContext:
        return CallContext(runtime=None, run=run, session=f"s-{run}", future="0")  # type: ignore[arg-type]

    seen: dict[str, list[str | None]] = {}

    def work(run: str) -> None:
        token = enter(ctx(run))
        try:
            with ThreadPoolExecutor(2) as pool:
                got = [pool.submit(contextvars.copy_context().run, nalar.current_run_id)
                       for _ in range(3)]
                seen[run] = [g.result() for g in got]
        finally:
            leave(token)

    threads = [threading.Thread(target=work, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {f"r{i}": [f"r{i}"] * 3 for i in range(4)}
    assert nalar.current_run_id() is None

    async def main() -> list[str | None]:
        async def one(run: str) -> str | None:
            enter(ctx(run))
            await asyncio.sleep(0)
            return current().run

        return list(await asyncio.gather(*(one(f"a{i}") for i in range(5))))

    assert asyncio.run(main()) == [f"a{i}" for i in range(5)]


def _resolved(fut: Future[Any], **kw: Any) -> None:
    status, data = encode_result(**kw)
    fut._resolve(FutureResult(fut.run, fut.future, data, {"Nalar-Status": status}))


def test_future_value_available_await_and_errors() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        f = _future("r", "1", loop)
        assert not f.available()
        with pytest.raises(BlockingInEventLoop):
            f.value()
        loop.call_later(0.01, lambda: _resolved(f, value=0))
        assert await f == 0 and f.available()
        g = _future("r", "2", loop)
        # a worker thread blocks on value() while the loop resolves the future
        result = loop.run_in_executor(None, g.value, 5)
        loop.call_later(0.01, lambda: _resolved(g, error=AgentError("x")))
        with pytest.raises(AgentError):
            await result
        h = _future("r", "3", loop)
        with pytest.raises(Timeout):
            await loop.run_in_executor(None, h.value, 0.01)
        with pytest.raises(Timeout):
            await h.wait(0.01)

    asyncio.run(main())


def test_managed_state_detected_and_local_looking() -> None:
    from nalar.state import CallState, NoManagedState

    @nalar.agent
    class Uses:
        def m(self) -> None:
            def inner() -> None:
                nalar.managed_list("x").append(1)

            inner()

    @nalar.agent
    class DoesNot:
        def m(self) -> int:
            return 1

    assert agent_spec(Uses).uses_state  # type: ignore[union-attr]
    assert not agent_spec(DoesNot).uses_state  # type: ignore[union-attr]
    with pytest.raises(NoManagedState):
        nalar.managed_dict("d")
    state = CallState({"d": {"a": 1}}, version=3)
    ctx = CallContext(runtime=None, run="r", session="s", future="1")  # type: ignore[arg-type]
    ctx.state = state
    token = enter(ctx)
    try:
        assert not state.changed()
        nalar.managed_dict("d")["b"] = 2
        nalar.managed_list("l").append("x")
        assert state.changed() and state.values == {"d": {"a": 1, "b": 2}, "l": ["x"]}
        with pytest.raises(InvalidInput):
            nalar.managed_list("d")
    finally:
        leave(token)


def test_replay_overrides_parse_as_json_or_text() -> None:
    import argparse

    import pytest
    from nalar.cli.runs import parse_override

    assert parse_override('3={"price": 500}') == ("3", {"price": 500})
    assert parse_override("2=hello world") == ("2", "hello world")
    assert parse_override("1_2=42") == ("1_2", 42)
    assert parse_override("4=") == ("4", "")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_override("nofuture")


@pytest.mark.parametrize("name", ["_driver", "_signal", "_Hidden", "a.b", "a b", "x" * 129])
def test_agent_names_of_the_runtime_or_not_a_subject_token_are_refused(name: str) -> None:
    # `_` names skip per-call authorization and guardrails: only the runtime has them
    with pytest.raises(ValueError, match="agent name"):
        nalar.agent(name=name)(type("A", (), {"go": lambda self: 1}))
    with pytest.raises(ValueError, match="agent name"):
        nalar.agent(type("_Private", (), {}))
    assert nalar.agent(name="Fine-1")(type("B", (), {})) is not None
