"""The agent examples as their READMEs run them, on a stack with their own policy and
guardrails and in local mode: examples/research_agent (OpenAI Agents SDK, a sandboxed code
tool), examples/support_graph (LangGraph, a human approval by interrupt()) and
examples/coding_agent (an agent graph of Tasks and Plans, people in the loop)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_stack import ROOT, StackHandle, start_stack, stop_stack

pytestmark = pytest.mark.e2e

RESEARCH = ROOT / "examples" / "research_agent"
SUPPORT = ROOT / "examples" / "support_graph"
CODING = ROOT / "examples" / "coding_agent"
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


@pytest.fixture(scope="module")
def support(nats_url: str, redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("support") / "nalar-up.log"
    handle = start_stack(SUPPORT, nats_url, redis_url, log, nodes=1,
                         args=("--llm-time-scale", "0.05"))
    yield handle
    stop_stack(handle)


def test_a_refund_waits_for_a_person_and_is_issued(support: StackHandle) -> None:
    from nalar_common.testing import wait_until_sync

    with support.client() as http:
        run = http.post("/v1/workflows/support/runs", json={"input": {
            "customer": "ann", "message": "I was charged twice, I want a refund"}}).json()

        def view() -> dict[str, Any]:
            return http.get(f"/v1/runs/{run['run_id']}").json()  # type: ignore[no-any-return]

        waiting = wait_until_sync(view, until=lambda v: v["status"] in (
            "waiting", "failed", "succeeded"), what="the refund waiting for its approval")
        assert waiting["status"] == "waiting", waiting
        signal = waiting["waiting_for"]["signal"]
        events = http.get(f"/v1/runs/{run['run_id']}/events",
                          params={"follow": "false"}).text
        assert '"mode": "interrupt"' in events or '"mode":"interrupt"' in events
        r = http.post(f"/v1/runs/{run['run_id']}/signals/{signal}",
                      json={"value": {"approve": True}})
        assert r.status_code == 202, r.text
        done = wait_until_sync(view, until=lambda v: v["status"] in ("succeeded", "failed"),
                               what="the refund issued")
    assert done["status"] == "succeeded", done
    assert done["result"]["outcome"] == "refunded 25 to ann"
    nodes = [f["method"] for f in steps(support, run["run_id"]) if f["agent"] == "tools"]
    assert nodes[:3] == ["support__classify", "support__draft_refund", "support__approve"]
    assert nodes[-1] == "support__issue_refund"


def test_a_question_is_answered_on_the_stack_and_in_local_mode(support: StackHandle) -> None:
    import asyncio

    from nalar.local import run_local

    ticket = {"customer": "bo", "message": "How do I reset my password?"}
    with support.client() as http:
        on_stack = http.post("/v1/workflows/support/runs", params={"wait": 60},
                             json={"input": ticket}).json()
    assert on_stack["status"] == "succeeded", on_stack
    assert on_stack["result"]["outcome"] == "answered"
    local = asyncio.run(run_local(str(SUPPORT), "support", ticket, time_scale=0.05))
    assert local == on_stack["result"]


@pytest.fixture(scope="module")
def coding(nats_url: str, redis_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("coding") / "nalar-up.log"
    handle = start_stack(CODING, nats_url, redis_url, log, nodes=1, hosts_per_node=2,
                         args=("--llm-time-scale", "0.01"))
    yield handle
    stop_stack(handle)


def test_the_coding_agent_asks_people_and_loops_until_accepted(coding: StackHandle) -> None:
    from nalar_common.testing import wait_until_sync

    with coding.client() as http:
        run = http.post("/v1/workflows/coding_agent/runs", json={"input": {}}).json()["run_id"]

        def answer(signal: str, value: Any) -> None:
            view = wait_until_sync(lambda: http.get(f"/v1/runs/{run}").json(),
                                   until=lambda v: v["status"] in ("waiting", "failed",
                                                                   "succeeded"),
                                   what=f"the lifetime waiting for {signal}", timeout=90)
            assert view.get("waiting_for") == {"signal": signal}, view
            r = http.post(f"/v1/runs/{run}/signals/{signal}", json={"value": value})
            assert r.status_code == 202, r.text
            wait_until_sync(lambda: http.get(f"/v1/runs/{run}").json(),
                            until=lambda v: v.get("waiting_for") != {"signal": signal},
                            what=f"{signal} taken")

        answer("human_input-1", {"app": "todo"})  # unclear: it asks again
        answer("human_input-2", {"app": "a todo app with tags and an api"})
        answer("accept-1", {"final": False, "feedback": "add tests"})  # refine: round two
        answer("accept-2", {"final": True})
        done = wait_until_sync(lambda: http.get(f"/v1/runs/{run}").json(),
                               until=lambda v: v["status"] in ("succeeded", "failed"),
                               what="the lifetime accepted")
        records = http.get(f"/v1/runs/{run}/executions").json()["executions"]
    assert done["status"] == "succeeded", done
    spec = done["result"]["input"]["spec"]
    assert spec["round"] == 2 and spec["feedback"] == "add tests"
    count = Counter(r["headers"]["node"] for r in records)
    # two rounds of two branches, each tried twice (the first attempt fails validation)
    assert count["code_api"] == count["code_ui"] == 4 and count["collect"] == 2
    assert count["human_input"] == 2 and count["accept"] == 2
    assert count["submit_to_llm"] == 2 and count["refine_or_execute"] == 3
    assert all(r["headers"]["status"] == "ok" for r in records)
    ran = next(r for r in records if r["headers"]["node"] == "code_api")["result"]["inline"]
    assert ran["output"]["ran"].startswith("exit code: 0")  # run in the sandbox


def test_the_coding_agent_runs_in_local_mode_with_the_answers_given() -> None:
    import asyncio

    from nalar.local import run_local

    answers = {"human_input": [{"app": "a todo app with tags and an api"}],
               "accept": [{"final": True}]}
    out = asyncio.run(run_local(str(CODING), "coding_agent",
                                {"input": {"human_answers": answers}}, time_scale=0.01))
    assert out["answer"] == {"final": True} and out["input"]["spec"]["round"] == 1
    assert set(out["input"]["code"]) == {"api", "ui"}
