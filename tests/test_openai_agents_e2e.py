"""OpenAI Agents SDK agents on Nalar (`nalar.openai_agents.workflow`), on a real stack with the
real `openai-agents` package: every model call an `llm.turn` future and every function tool
call a `tools.<name>` future, handoffs and agents-as-tools by the SDK's Runner, its guardrails
ending the run, a denied tool answered as a tool error, and a host killed mid-run resuming
without repeating a turn or a tool call (tests/apps/oai_agents, its simulated engine scripted
per scenario by a key in the first user message).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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
    OPEN_POLICY,
    ROOT,
    StackHandle,
    live_config,
)

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "oai_agents"


HANDOFF = call("transfer_to_weather_specialist")
SCRIPT: dict[str, list[dict[str, Any]]] = {
    "handoff": [{"tool_calls": [HANDOFF]}, {"tool_calls": [call("get_weather", city="Paris")]},
                {"text": "sunny in Paris, says the specialist"}],
    "translate": [{"tool_calls": [call("translate", input="please-shout: bonjour")]},
                  {"text": "they said BONJOUR"}],
    "please-shout": [{"tool_calls": [call("shout", text="bonjour")]}, {"text": "BONJOUR!"}],
    "judge-it": [{"text": 'Here it is: {"city": "Oslo", "good": true}'}],
    "denied": [{"tool_calls": [HANDOFF]}, {"tool_calls": [call("get_weather", city="Oslo")]},
               {"text": "done"}],
    "explode": [{"tool_calls": [HANDOFF]}, {"tool_calls": [call("explode", reason="test")]},
                {"text": "it broke"}],
    "leak": [{"tool_calls": [HANDOFF]}, {"text": "the secret is 42"}],
    "durable": [{"tool_calls": [HANDOFF]}, {"tool_calls": [call("note", text="one")]},
                {"tool_calls": [call("wait_for_gate", name="G")]},
                {"tool_calls": [call("note", text="two")]}, {"text": "finished"}],
}
ENGINE = engine_env(SCRIPT)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oai")


@pytest.fixture(scope="module")
def stack(nats_url: str, redis_url: str, config_dir: Path) -> Iterator[StackHandle]:
    with governed_stack(APP, nats_url, redis_url, config_dir,
                        {**ENGINE, "OAI_DIR": str(config_dir)}) as handle:
        yield handle


def tool_outputs(result: dict[str, Any]) -> dict[str, str]:
    """What the model read for each tool call of a transcript, by tool name."""
    names = {i["call_id"]: i["name"] for i in result["items"]
             if i.get("type") == "function_call"}
    return {names[i["call_id"]]: i["output"] for i in result["items"]
            if i.get("type") == "function_call_output"}


def test_a_handoff_to_a_specialist_with_a_function_tool(stack: StackHandle,
                                                        config_dir: Path) -> None:
    out = start(stack.url, "transcript", question="handoff: the weather in Paris?")
    assert out["status"] == "succeeded", out
    result = out["result"]
    assert result["output"] == "sunny in Paris, says the specialist"
    assert result["last_agent"] == "weather_specialist"
    assert tool_outputs(result) == {"transfer_to_weather_specialist":
                                    '{"assistant": "weather_specialist"}',
                                    "get_weather": "sunny in Paris"}
    # the triage's turn, the specialist's turn, its tool on the `tools` agent, its answer
    assert steps(stack.url, out["run_id"]) == ["llm.turn", "llm.turn", "tools.get_weather",
                                               "llm.turn"]
    assert "get_weather Paris" in executions(config_dir)
    j = httpx.get(f"{stack.url}/v1/runs/{out['run_id']}/journal", timeout=30).json()
    calls = {c["future"]: c for c in j["calls"]}
    assert calls["1"]["llm_requests"] == 1 and calls["3"]["kind"] == "tool"


def test_an_agent_as_a_tool_runs_its_turns_and_tools_as_futures(stack: StackHandle) -> None:
    out = start(stack.url, "research", input="translate: bonjour")
    assert out["status"] == "succeeded", out
    assert out["result"] == "they said BONJOUR"
    assert steps(stack.url, out["run_id"]) == [
        "llm.turn",  # the triage proposes the translator
        "llm.turn", "tools.shout", "llm.turn",  # the translator's turns and tool
        "llm.turn"]  # the triage's answer


def test_an_output_type_is_the_result_in_json(stack: StackHandle) -> None:
    out = start(stack.url, "verdict", input="judge-it: Oslo")
    assert out["status"] == "succeeded", out
    assert out["result"] == {"city": "Oslo", "good": True}
    assert steps(stack.url, out["run_id"]) == ["llm.turn"]


def test_an_input_guardrail_that_trips_ends_the_run(stack: StackHandle) -> None:
    out = start(stack.url, "research", input="forbidden: tell me everything")
    assert out["status"] == "failed", out
    assert out["error"]["code"] == "guardrail_tripwire", out
    assert out["error"]["details"]["guardrail"] == "no_forbidden_words"
    assert out["error"]["details"]["output_info"] == {"checked": "forbidden"}
    assert steps(stack.url, out["run_id"]) == []  # blocking: before any model call


def test_an_output_guardrail_that_trips_ends_the_run(stack: StackHandle) -> None:
    out = start(stack.url, "research", input="leak: what is the secret")
    assert out["status"] == "failed", out
    assert out["error"]["code"] == "guardrail_tripwire", out
    assert out["error"]["details"]["kind"] == "output"
    assert steps(stack.url, out["run_id"]) == ["llm.turn", "llm.turn"]


def test_a_denied_tool_is_a_tool_error_the_model_sees(stack: StackHandle,
                                                      config_dir: Path) -> None:
    with live_config(config_dir / "policy.yaml", OPEN_POLICY) as write:
        write("rules:\n  - match: {name: test}\n    workflows: all\n"
              "    agents: [llm, tools.shout, tools.note]\n")
        before = executions(config_dir)
        out = start(stack.url, "transcript", question="denied: Oslo")
    assert out["status"] == "succeeded", out
    answer = tool_outputs(out["result"])["get_weather"]
    assert answer.startswith("error (permission_denied):") and "tools.get_weather" in answer
    assert out["result"]["output"] == "done"
    assert executions(config_dir) == before  # it never ran


def test_a_tool_that_raises_is_the_sdk_failure_message(stack: StackHandle) -> None:
    out = start(stack.url, "transcript", question="explode: please")
    assert out["status"] == "succeeded", out
    assert tool_outputs(out["result"])["explode"] == \
        "An error occurred while running the tool. Please try again."
    assert out["result"]["output"] == "it broke"
    rows = [f for f in futures(stack.url, out["run_id"]) if f["agent"] == "tools"]
    assert [(r["method"], r["status"]) for r in rows] == [("explode", "failed")]


# -- a host killed mid-run -------------------------------------------------------------------
def test_runs_of_one_session_continue_one_conversation(stack: StackHandle) -> None:
    """`workflow(..., session=True)`: the SDK's session is the Nalar session, its items in
    the `conversations` agent's managed state."""
    def turn(message: str, session: str) -> dict[str, Any]:
        r = httpx.post(f"{stack.url}/v1/workflows/chat_items/runs", params={"wait": 60},
                       json={"input": {"message": message}, "session_id": session}, timeout=90)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        return r.json()  # type: ignore[no-any-return]

    first = turn("hello there", "chat-a")
    assert first["result"] == 2  # the question and the answer
    # the SDK reads the history, saves the new input, asks the model, saves its answer
    assert steps(stack.url, first["run_id"]) == [
        "conversations.items", "conversations.add", "llm.turn", "conversations.add"]
    assert turn("and again", "chat-a")["result"] == 4  # the first exchange came along
    assert turn("hello there", "chat-b")["result"] == 2  # another session: its own


@pytest.fixture
def hosts(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A controller, two hosts and a gateway as separate processes (so one host can die)."""
    env = {**ENGINE, "OAI_DIR": str(tmp_path)}
    with killable_hosts(APP, nats_url, redis_url, tmp_path, env) as handle:
        yield handle


def test_a_host_killed_mid_run_resumes_without_repeating_a_step(
        hosts: dict[str, Any]) -> None:
    run = start(hosts["url"], "research", wait=None, input="durable work")["run_id"]
    rows, asked = kill_the_driver_host_mid_run(hosts, run)
    # each step once: five turns (one LLM request each) and three tool calls
    assert [f"{f['agent']}.{f['method']}" for f in rows if f["future"] != "0"] == [
        "llm.turn", "llm.turn", "tools.note", "llm.turn", "tools.wait_for_gate", "llm.turn",
        "tools.note", "llm.turn"]
    assert asked == [1] * 5, asked
    notes = [line for line in executions(hosts["dir"]) if line.startswith("note")]
    assert notes == ["note one", "note two"]


def test_local_mode_runs_the_same_agents(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nalar.local import run_local

    for k, v in {**ENGINE, "OAI_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    assert asyncio.run(run_local(str(APP), "research", {"input": "translate: bonjour"})) \
        == "they said BONJOUR"
    out = asyncio.run(run_local(str(APP), "transcript", {"question": "handoff: Paris?"}))
    assert out["output"] == "sunny in Paris, says the specialist"
    assert tool_outputs(out)["get_weather"] == "sunny in Paris"
    assert asyncio.run(run_local(str(APP), "verdict", {"input": "judge-it: Oslo"})) == \
        {"city": "Oslo", "good": True}
    assert executions(tmp_path) == ["shout bonjour", "get_weather Paris"]
