"""The agent examples as their READMEs run them: examples/research_agent (OpenAI Agents SDK,
a sandboxed code tool) on a stack with its own policy and guardrails, and in local mode."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_stack import ROOT, StackHandle, start_stack, stop_stack

pytestmark = pytest.mark.e2e

RESEARCH = ROOT / "examples" / "research_agent"
SIM = (RESEARCH / "config" / "sim.json").read_text()


@pytest.fixture(scope="module")
def research(nats_url: str, redis_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("research") / "nalar-up.log"
    handle = start_stack(RESEARCH, nats_url, redis_url, log, nodes=1,
                         extra_env={"NALAR_LLM_SIM_PARAMS": SIM},
                         args=("--llm-time-scale", "0.05"))
    yield handle
    stop_stack(handle)


def steps(stack: StackHandle, run: str) -> list[dict[str, Any]]:
    with stack.client() as http:
        rows = http.get(f"/v1/runs/{run}/futures").json()["futures"]
    return [f for f in rows if f["future"] != "0"]


def test_a_question_goes_to_the_quant_and_its_code_runs_in_the_sandbox(
        research: StackHandle) -> None:
    with research.client() as http:
        r = http.post("/v1/workflows/research/runs", params={"wait": 60},
                      json={"input": {"input": "What is 17 * 23 + 4?"}})
    run = r.json()
    assert r.status_code == 200 and run["status"] == "succeeded", r.text
    assert run["result"].startswith("17 * 23 + 4 = 395")
    done = steps(research, run["run_id"])
    assert [f"{f['agent']}.{f['method']}" for f in done] == [
        "llm.turn", "llm.turn", "tools.calculator", "tools.run_python", "llm.turn"]
    assert all(f["status"] == "succeeded" for f in done), done


def test_the_web_researcher_answers_in_local_mode_too(research: StackHandle,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from nalar.local import run_local

    question = {"input": "What is Nalar?"}
    with research.client() as http:
        on_stack = http.post("/v1/workflows/research/runs", params={"wait": 60},
                             json={"input": question}).json()
    assert on_stack["status"] == "succeeded", on_stack
    assert [f"{f['agent']}.{f['method']}" for f in steps(research, on_stack["run_id"])] == [
        "llm.turn", "llm.turn", "tools.web_search", "llm.turn"]
    monkeypatch.setenv("NALAR_LLM_SIM_PARAMS", SIM)
    local = asyncio.run(run_local(str(RESEARCH), "research", question, time_scale=0.05))
    assert local == on_stack["result"]


def test_analysts_may_not_run_code(research: StackHandle) -> None:
    """The app's policy denies `tools.run_python` to analysts: that call fails with
    `permission_denied`, which the Quant is told, and the run still answers."""
    made = subprocess.run([sys.executable, "-m", "nalar", "keys", "create", "--name", "ann",
                           "--role", "analyst", "--tenant", "default", "--redis-url",
                           research.redis_url, "--prefix", research.prefix],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    with research.client() as http:
        r = http.post("/v1/workflows/research/runs", params={"wait": 60},
                      headers={"Authorization": f"Bearer {made.stdout.strip()}"},
                      json={"input": {"input": "What is 17 * 23 + 4?"}})
    run = r.json()
    assert r.status_code == 200 and run["status"] == "succeeded", r.text
    assert run["started_by"]["roles"] == ["analyst"]
    by_method = {f"{f['agent']}.{f['method']}": f for f in steps(research, run["run_id"])}
    assert by_method["tools.calculator"]["status"] == "succeeded"
    denied = by_method["tools.run_python"]
    assert denied["status"] == "failed" and denied["error"]["code"] == "permission_denied"
