"""The durable tool-calling loop (`nalar.AgentLoop`) on a real stack: every LLM turn and tool
call a future, bad arguments answered as tool errors, tools authorized and guarded, a replay
with an overridden tool result, and a host killed mid-loop resuming without repeating a
finished turn or tool call (tests/apps/tooluse, its simulated engine scripted per scenario).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_runs import (
    call,
    engine_env,
    executions,
    futures,
    governed_stack,
    kill_the_driver_host_mid_run,
    killable_hosts,
    start,
    steps,
)
from e2e_stack import (
    NO_LIMITS,
    OPEN_POLICY,
    ROOT,
    StackHandle,
    live_config,
)

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "tooluse"


SCRIPT: dict[str, list[dict[str, Any]]] = {
    "bad-args": [{"tool_calls": [call("get_weather", copout="32"),
                                 {"name": "get_weather", "arguments": "{not json"},
                                 call("teleport", to="Mars")]},
                 {"text": "I could not find out"}],
    "parallel": [{"tool_calls": [call("slow_echo", text="a", seconds=0.5),
                                 call("slow_echo", text="b", seconds=0.5),
                                 call("add", a=2, b=3)]},
                 {"text": "a b 5"}],
    "denied": [{"tool_calls": [call("get_weather", city="Oslo")]}, {"text": "done"}],
    "delegate": [{"tool_calls": [call("weather", input="what about Rome")]},
                 {"text": "Rome it is"}],
    "Rome": [{"tool_calls": [call("get_weather", city="Rome")]}, {"text": "sunny, Rome"}],
    "replay-me": [{"tool_calls": [call("get_weather", city="Paris")]}],
    "durable": [{"tool_calls": [call("note", text="one")]},
                {"tool_calls": [call("wait_for_gate", name="G")]},
                {"tool_calls": [call("note", text="two")]},
                {"text": "finished"}],
    "judge-it": [{"text": "it is nice"},
                 {"text": 'Sure! {"city": "Oslo", "good": true} Hope that helps.'}],
    "panel-it": [{"tool_calls": [call("judge", input="judge-it: Oslo")]}, {"text": "agreed"}],
}
ENGINE = engine_env(SCRIPT)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tooluse")


@pytest.fixture(scope="module")
def stack(nats_url: str, redis_url: str, config_dir: Path) -> Iterator[StackHandle]:
    with governed_stack(APP, nats_url, redis_url, config_dir,
                        {**ENGINE, "TOOLUSE_DIR": str(config_dir)}) as handle:
        yield handle


def tool_messages(out: dict[str, Any]) -> list[str]:
    return [m["content"] for m in out["messages"] if m["role"] == "tool"]


def test_each_turn_and_tool_call_is_a_future(stack: StackHandle) -> None:
    run = start(stack.url, "weather", input="What is the weather in Paris?")
    assert run["status"] == "succeeded", run
    assert isinstance(run["result"], str) and run["result"]
    done = steps(stack.url, run["run_id"])
    assert done[0] == "llm.turn" and done[-1] == "llm.turn" and len(done) == 3, done
    assert done[1] in ("tools.get_weather", "Calculator.add", "tools.slow_echo"), done
    j = httpx.get(f"{stack.url}/v1/runs/{run['run_id']}/journal", timeout=30).json()
    calls = {c["future"]: c for c in j["calls"]}
    assert calls["1"]["llm_requests"] == 1 and calls["3"]["llm_requests"] == 1
    assert calls["2"]["kind"] == "tool" and calls["2"]["status"] == "ok"


def test_bad_arguments_and_unknown_tools_are_answered_as_tool_errors(
        stack: StackHandle, config_dir: Path) -> None:
    before = executions(config_dir)
    out = start(stack.url, "transcript", loop="weather", question="bad-args please")
    assert out["status"] == "succeeded", out
    answers = tool_messages(out["result"])
    assert answers[0].startswith("error: arguments of get_weather do not fit its parameters")
    assert "city: Field required" in answers[0] and "copout" in answers[0]
    assert answers[1].startswith("error: arguments of get_weather are not JSON")
    assert answers[2].startswith("error: there is no tool 'teleport'")
    assert out["result"]["output"] == "I could not find out"
    # no tool ran: only the two turns became futures
    assert steps(stack.url, out["run_id"]) == ["llm.turn", "llm.turn"]
    assert executions(config_dir) == before


def test_parallel_tool_calls_run_in_parallel(stack: StackHandle) -> None:
    out = start(stack.url, "transcript", loop="weather", question="parallel, please")
    assert out["status"] == "succeeded", out
    assert tool_messages(out["result"]) == ["a", "b", "5.0"]
    rows = {f["future"]: f for f in futures(stack.url, out["run_id"])}
    tools = [rows[f] for f in ("2", "3", "4")]
    assert [f"{t['agent']}.{t['method']}" for t in tools] == [
        "tools.slow_echo", "tools.slow_echo", "Calculator.add"]
    # both echoes (half a second of work each) ran at once
    echoes = [t["timings"] for t in tools[:2]]
    assert max(t["started"] for t in echoes) < min(t["finished"] for t in echoes), echoes


def test_an_agent_loop_is_a_tool_of_another(stack: StackHandle) -> None:
    out = start(stack.url, "researcher", input="delegate: ask about Rome")
    assert out["status"] == "succeeded", out
    assert out["result"] == "Rome it is"
    assert steps(stack.url, out["run_id"]) == [
        "llm.turn",  # the researcher's first turn proposes the weather agent
        "llm.turn", "tools.get_weather", "llm.turn",  # the weather agent's turns and tool
        "llm.turn"]  # the researcher's answer


def test_output_type_is_checked_and_the_model_asked_again(stack: StackHandle) -> None:
    out = start(stack.url, "judge", input="judge-it: Oslo")
    assert out["status"] == "succeeded", out
    assert out["result"] == {"city": "Oslo", "good": True}
    assert steps(stack.url, out["run_id"]) == ["llm.turn", "llm.turn"]


def test_a_denied_tool_is_a_tool_error_the_model_sees(stack: StackHandle,
                                                      config_dir: Path) -> None:
    with live_config(config_dir / "policy.yaml", OPEN_POLICY) as write:
        write("rules:\n  - match: {name: test}\n    workflows: all\n"
              "    agents: [llm, Calculator, tools.slow_echo]\n")
        before = executions(config_dir)
        out = start(stack.url, "transcript", loop="weather", question="denied: Oslo")
    assert out["status"] == "succeeded", out
    [answer] = tool_messages(out["result"])
    assert answer.startswith("error (permission_denied):") and "tools.get_weather" in answer
    assert out["result"]["output"] == "done"
    assert executions(config_dir) == before


def test_an_iterations_guardrail_stops_a_runaway_loop(stack: StackHandle,
                                                      config_dir: Path) -> None:
    with live_config(config_dir / "guardrails.yaml", NO_LIMITS) as write:
        write("limits:\n  - name: loop-turns\n    iterations: 3\n    agent: llm.turn\n"
              "    match: {workflow: runaway}\n")
        out = start(stack.url, "runaway", input="Check the weather forever")
    assert out["status"] == "failed", out
    assert out["error"]["code"] == "guardrail_exceeded", out
    turns = [f for f in futures(stack.url, out["run_id"]) if f["agent"] == "llm"]
    assert [t["status"] for t in turns] == ["succeeded"] * 3 + ["failed"], turns


def test_max_turns_ends_the_run(stack: StackHandle) -> None:
    out = start(stack.url, "short", input="Check the weather")
    assert out["status"] == "failed", out
    assert out["error"]["code"] == "max_turns_exceeded", out
    # the calls of the last turn do not run: no turn is left to read their results
    assert steps(stack.url, out["run_id"]) == ["llm.turn", "tools.get_weather", "llm.turn"]


def test_a_forced_tool_choice_holds_for_the_first_turn_only(stack: StackHandle) -> None:
    out = start(stack.url, "forced_once", input="Check the weather")
    assert out["status"] == "succeeded", out
    assert steps(stack.url, out["run_id"]) == ["llm.turn", "tools.get_weather", "llm.turn"]


def test_a_replay_with_an_overridden_tool_result(stack: StackHandle, config_dir: Path) -> None:
    original = start(stack.url, "weather", input="replay-me")
    assert original["status"] == "succeeded", original
    assert steps(stack.url, original["run_id"]) == ["llm.turn", "tools.get_weather",
                                                    "llm.turn"]
    made = executions(config_dir)
    same = httpx.post(f"{stack.url}/v1/runs/{original['run_id']}/replay", params={"wait": 60},
                      json={"overrides": {}}, timeout=90).json()
    assert same["result"] == original["result"]
    other = httpx.post(f"{stack.url}/v1/runs/{original['run_id']}/replay",
                       params={"wait": 60}, json={"overrides": {"2": "a blizzard in Paris"}},
                       timeout=90).json()
    assert other["status"] == "succeeded", other
    assert other["result"] != original["result"]  # the model answered the new tool result
    assert executions(config_dir) == made  # the tool never ran again
    calls = {c["future"]: c for c in httpx.get(
        f"{stack.url}/v1/runs/{other['run_id']}/journal", timeout=30).json()["calls"]}
    assert calls["1"]["replayed"] == "journal" and calls["2"]["replayed"] == "override"
    assert calls["3"].get("replayed") is None  # asked again


def test_a_fork_runs_live_after_its_point(stack: StackHandle, config_dir: Path) -> None:
    """A fork of a plain workflow: the first turn overridden to ask about Oslo; the tool it
    calls then runs (a replay would refuse it), and so does every turn after."""
    original = start(stack.url, "weather", input="replay-me")
    assert original["status"] == "succeeded", original
    turn = {"content": None, "finish_reason": "tool_calls", "model": "simulated", "usage": {},
            "tool_calls": [{"id": "c1", "name": "get_weather",
                            "arguments": '{"city": "Oslo"}'}]}
    r = httpx.post(f"{stack.url}/v1/runs/{original['run_id']}/fork", params={"wait": 60},
                   json={"at": "1", "override": turn}, timeout=90)
    fork = r.json()
    assert r.status_code == 200 and fork["status"] == "succeeded", r.text
    assert "get_weather Oslo" in executions(config_dir)
    assert steps(stack.url, fork["run_id"]) == ["llm.turn", "tools.get_weather", "llm.turn"]


# -- a host killed mid-loop ------------------------------------------------------------------
@pytest.fixture
def hosts(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A controller, two hosts and a gateway as separate processes (so one host can die)."""
    env = {**ENGINE, "TOOLUSE_DIR": str(tmp_path)}
    with killable_hosts(APP, nats_url, redis_url, tmp_path, env) as handle:
        yield handle


def test_a_host_killed_mid_loop_resumes_without_repeating_a_step(
        hosts: dict[str, Any]) -> None:
    run = start(hosts["url"], "researcher", wait=None, input="durable work")["run_id"]
    rows, asked = kill_the_driver_host_mid_run(hosts, run)
    # each step once: four turns (one LLM request each) and three tool calls
    assert [f"{f['agent']}.{f['method']}" for f in rows if f["future"] != "0"] == [
        "llm.turn", "Calculator.note", "llm.turn", "tools.wait_for_gate", "llm.turn",
        "Calculator.note", "llm.turn"]
    assert asked == [1, 1, 1, 1], asked
    notes = [line for line in executions(hosts["dir"]) if line.startswith("note")]
    assert notes == ["note one", "note two"]


def test_local_mode_runs_the_same_loop(tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from nalar.local import run_local

    for k, v in {**ENGINE, "TOOLUSE_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    out: Callable[..., Any] = run_local
    result = asyncio.run(out(str(APP), "transcript", {"loop": "weather",
                                                      "question": "bad-args please"}))
    assert result["output"] == "I could not find out"
    assert tool_messages(result)[2].startswith("error: there is no tool 'teleport'")
    assert asyncio.run(out(str(APP), "researcher", {"input": "delegate: ask about Rome"})) \
        == "Rome it is"
    # a loop with an output type, used as a tool: its parent reads its output as JSON
    panel = asyncio.run(out(str(APP), "transcript", {"loop": "panel",
                                                     "question": "panel-it please"}))
    assert json.loads(tool_messages(panel)[0]) == {"city": "Oslo", "good": True}
    assert panel["output"] == "agreed"
