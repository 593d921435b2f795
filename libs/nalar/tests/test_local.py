"""Local mode: the same semantics as the stack, in one process with no servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nalar.app import load_app
from nalar.local import LocalRuntime, run_local
from nalar_common.errors import AgentError, DependencyFailed, InvalidInput, NotFound

ROOT = Path(__file__).resolve().parents[3]
BASIC = ROOT / "tests" / "apps" / "basic"


@pytest.mark.parametrize("value", ["", None, 0, "0123456789abcdef0123456789abcdef", [], {}])
async def test_values_round_trip(value: object) -> None:
    assert await run_local(str(BASIC), "echo", {"value": value}) == value


async def test_dependencies_nested_and_async() -> None:
    assert await run_local(str(BASIC), "chain", {"a": 2, "b": 3}) == 31
    assert await run_local(str(BASIC), "aecho", {"value": "x"}) == "x"
    assert await run_local(str(BASIC), "noops", {"n": 20}) == 20


async def test_errors_are_typed() -> None:
    with pytest.raises(AgentError) as info:
        await run_local(str(BASIC), "fail", {"message": "bad"})
    assert "ValueError: bad" in info.value.message
    assert "raise ValueError(message)" in info.value.details["traceback"]
    with pytest.raises(DependencyFailed) as dep:
        await run_local(str(BASIC), "fail_dependency", {"message": "up"})
    assert dep.value.details["dependency"] == "1"
    with pytest.raises(NotFound):
        await run_local(str(BASIC), "nope", {})
    with pytest.raises(InvalidInput):
        await run_local(str(BASIC), "typed", {"count": 1})  # missing label


async def test_context_ids_in_threads_and_tasks() -> None:
    app = load_app(BASIC)
    async with LocalRuntime(app) as rt:
        for wf in ("context_in_threads", "context_in_tasks"):
            out = await rt.run(wf, {"n": 3}, session="s-local")
            assert out["session"] == "s-local"
            assert out["seen"] == [{"run": out["run"], "session": "s-local"}] * 3


async def test_managed_state_across_runs_of_a_session() -> None:
    app = load_app(BASIC)
    async with LocalRuntime(app) as rt:
        assert await rt.run("count", {"by": 2, "times": 2}, session="a") == {
            "n": 4, "history": [2, 2]}
        assert (await rt.run("count", {"by": 1}, session="a"))["n"] == 5
        with pytest.raises(AgentError):
            await rt.run("count_fail", {"by": 1}, session="a")
        assert (await rt.run("count", {"by": 0}, session="a"))["n"] == 5  # failed: discarded
        assert (await rt.run("count_parallel", {"n": 8}, session="b"))["n"] == 8
        assert (await rt.run("count", {"by": 1}, session="c"))["n"] == 1


def test_nalar_run_local_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nalar", "run", "--local", str(BASIC), "chain",
         '{"input": {"a": 1, "b": 1}}'], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"status": "succeeded", "result": 22}
    bad = subprocess.run(
        [sys.executable, "-m", "nalar", "run", "--local", str(BASIC), "fail",
         '{"input": {"message": "boom"}}'], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["code"] == "agent_error"


async def test_per_method_timeouts_locally() -> None:
    assert await run_local(str(BASIC), "timeouts", {}) == {
        "quick": "ok", "hang": "timeout", "hang_sync": "timeout"}


def test_bad_hints_are_clear_errors() -> None:
    import nalar

    with pytest.raises(ValueError, match="timeout"):
        nalar.method(timeout=0)
    with pytest.raises(ValueError, match="min_instances"):
        nalar.agent(min_instances=3, max_instances=2)
    with pytest.raises(ValueError, match="resources"):
        nalar.agent(resources={"gpu": -1})
