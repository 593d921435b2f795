"""Agent graphs on a real stack (tests/apps/agentgraphs): a lifetime walks Task → Plan →
Task, each execution a future with an execution record (`GET /v1/runs/{id}/executions`,
`nalar runs executions ID`), a PARALLEL fan-out joined again, several versions of a YAML
graph live at once, and an iteration cap that stops a cycle."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_runs import executions as executions_log
from agent_runs import futures, governed_stack, kill_the_driver_host_mid_run, killable_hosts, start
from e2e_stack import NO_LIMITS, ROOT, StackHandle, live_config

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "agentgraphs"


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agentgraphs")


@pytest.fixture(scope="module")
def stack(nats_url: str, redis_url: str, config_dir: Path) -> Iterator[StackHandle]:
    with governed_stack(APP, nats_url, redis_url, config_dir,
                        {"NALAR_LLM_TIME_SCALE": "0.01"}) as handle:
        yield handle


@pytest.fixture
def limits(config_dir: Path) -> Iterator[Callable[[str], None]]:
    """Write the stack's guardrails; its controllers use them from the next call on."""
    with live_config(config_dir / "guardrails.yaml", NO_LIMITS) as write:
        yield write


def executions(url: str, run: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/v1/runs/{run}/executions", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["executions"]  # type: ignore[no-any-return]


def test_a_lifetime_records_every_execution(stack: StackHandle) -> None:
    run = start(stack.url, "review", input={"topic": "futures"})
    assert run["status"] == "succeeded", run
    assert run["result"] == {"published": True, "facts": "ok", "style": "ok", "round": 3}
    nodes = ["draft", "critic"] * 3 + ["check_facts", "check_style", "merge", "publish"]
    assert [f["method"] for f in futures(stack.url, run["run_id"]) if f["agent"] == "tools"] \
        == [f"review__v1_0_0__{n}" for n in nodes]
    records = executions(stack.url, run["run_id"])
    heads = [r["headers"] for r in records]
    assert [h["node"] for h in heads] == nodes
    assert [h["iteration"] for h in heads if h["node"] == "draft"] == [1, 2, 3]
    assert {h["status"] for h in heads} == {"ok"} and heads[0]["kind"] == "task"
    assert heads[1]["kind"] == "plan" and heads[0]["version"] == "1.0.0"
    drafts = [r for r in records if r["headers"]["node"] == "draft"]
    assert all(r["telemetry"]["tokens_used"] > 0 and r["telemetry"]["llm_calls"] == 1
               for r in drafts)
    assert records[-1]["result"]["inline"]["final"] is True
    assert records[1]["result"]["inline"]["next_tasks"] == ["draft"]
    assert records[5]["result"]["inline"]["next_tasks"] == ["check_facts", "check_style"]
    out = subprocess.run([sys.executable, "-m", "nalar", "runs", "executions",
                          run["run_id"], "--url", stack.url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "check_style" in out.stdout and len(out.stdout.splitlines()) == 11


def test_graphs_have_their_own_run_endpoint(stack: StackHandle) -> None:
    r = httpx.post(f"{stack.url}/v1/graphs/pingpong/runs", params={"wait": 60},
                   json={"input": {"input": 0, "version": "2.0.0"}}, timeout=90)
    assert r.status_code == 200 and r.json()["result"] == "pinged 3 times", r.text
    missing = httpx.post(f"{stack.url}/v1/graphs/nope/runs", json={"input": {}}, timeout=30)
    assert missing.status_code == 404 and "pingpong" in missing.text


def test_versions_live_at_once_and_a_cap_stops_a_cycle(stack: StackHandle) -> None:
    newest = start(stack.url, "pingpong", input=0)
    assert newest["status"] == "succeeded" and newest["result"] == "pinged 3 times", newest
    capped = start(stack.url, "pingpong", input=0, version="1.0.0")
    assert capped["status"] == "failed", capped
    assert capped["error"]["code"] == "guardrail_exceeded", capped
    assert capped["error"]["details"]["node"] == "ping"
    heads = [r["headers"] for r in executions(stack.url, capped["run_id"])]
    assert [(h["node"], h["iteration"], h["version"]) for h in heads] == [
        ("ping", 1, "1.0.0"), ("pong", 1, "1.0.0"), ("ping", 2, "1.0.0"),
        ("pong", 2, "1.0.0"), ("ping", 3, "1.0.0"), ("pong", 3, "1.0.0")]
    unknown = start(stack.url, "pingpong", input=0, version="9.9.9")
    assert unknown["status"] == "failed" and unknown["error"]["code"] == "invalid_input"
    assert "live: 1.0.0, 2.0.0" in unknown["error"]["message"]


def test_an_abort_guardrail_stops_the_lifetime_before_the_spend(
        stack: StackHandle, limits: Callable[[str], None]) -> None:
    """Drafting spends LLM tokens: a lifetime limit that two drafts fit and a third's worst
    case does not aborts the lifetime before the third request reaches the engine."""
    limits("limits: [{name: lifetime-tokens, tokens: 25, action: abort, "
           "match: {workflow: review}}]")
    run = start(stack.url, "review", input={"topic": "futures"})
    assert run["status"] == "cancelled", run
    details = run["error"]["details"]
    assert details["guardrail"] == "lifetime-tokens" and details["action"] == "abort"
    records = executions(stack.url, run["run_id"])
    done = [r["headers"]["node"] for r in records if r["headers"]["status"] == "ok"]
    assert done == ["draft", "critic", "draft", "critic"]
    assert sum(r["telemetry"]["tokens_used"] for r in records) <= 25


def test_an_execution_limit_binds_each_execution_on_its_own(
        stack: StackHandle, limits: Callable[[str], None]) -> None:
    """A draft's request reserves 11 tokens at worst: 12 per execution lets every draft
    through (33 in the lifetime), 10 stops the first."""
    limits("limits: [{name: per-draft, tokens: 12, scope: execution}]")
    fits = start(stack.url, "review", input={"topic": "futures"})
    assert fits["status"] == "succeeded", fits
    limits("limits: [{name: per-draft, tokens: 10, scope: execution}]")
    stopped = start(stack.url, "review", input={"topic": "futures"})
    assert stopped["status"] == "failed", stopped
    assert stopped["error"]["code"] == "guardrail_exceeded", stopped
    [record] = executions(stack.url, stopped["run_id"])
    assert record["headers"]["node"] == "draft" and record["headers"]["status"] == "failed"


def test_a_pause_guardrail_holds_the_lifetime_until_resumed(
        stack: StackHandle, limits: Callable[[str], None]) -> None:
    from nalar_common.testing import wait_until_sync

    limits("limits: [{name: two-drafts, iterations: 2, "
           "agent: tools.review__v1_0_0__draft, action: pause}]")
    run = start(stack.url, "review", wait=None, input={"topic": "futures"})["run_id"]

    def view() -> dict[str, Any]:
        return httpx.get(f"{stack.url}/v1/runs/{run}", timeout=30).json()  # type: ignore[no-any-return]

    paused = wait_until_sync(view, until=lambda v: v["status"] in ("paused", "failed"),
                             what="the lifetime paused before its third draft")
    assert paused["status"] == "paused" and paused["paused_by"]["guardrail"] == "two-drafts"
    assert [r["headers"]["node"] for r in executions(stack.url, run)] == ["draft", "critic"] * 2
    r = httpx.post(f"{stack.url}/v1/runs/{run}/signals/resume", json={"value": "go"},
                   timeout=30)
    assert r.status_code == 202, r.text
    done = wait_until_sync(view, until=lambda v: v["status"] in ("succeeded", "failed"),
                           what="the lifetime finished after its resume")
    assert done["status"] == "succeeded" and done["result"]["round"] == 3, done


def test_a_fork_reuses_the_executions_before_it_and_takes_another_branch(
        stack: StackHandle) -> None:
    """Fork at the first Plan, with its decision overridden: the draft before it is served
    from the original's records (no LLM asked), the override sends the lifetime straight to
    the checks, and everything after the fork point runs live."""
    original = start(stack.url, "review", input={"topic": "fork me"})
    assert original["status"] == "succeeded", original
    first = executions(stack.url, original["run_id"])
    draft, critic = first[0], first[1]
    assert critic["headers"]["node"] == "critic"
    at = critic["headers"]["future"]
    decision = {"next_tasks": ["check_facts", "check_style"], "final": False,
                "output": draft["result"]["inline"]["output"],
                "usage": {"tokens_used": 0, "llm_calls": 0}}
    r = httpx.post(f"{stack.url}/v1/runs/{original['run_id']}/fork", params={"wait": 60},
                   json={"at": at, "override": decision}, timeout=90)
    assert r.status_code == 200, r.text
    fork = r.json()
    assert fork["status"] == "succeeded", fork
    assert fork["replay_of"] == original["run_id"] and fork.get("fork_at") == at
    assert fork["result"]["round"] == 1  # the draft of round one went straight to the checks
    assert [rec["headers"]["node"] for rec in executions(stack.url, fork["run_id"])] == [
        "draft", "critic", "check_facts", "check_style", "merge", "publish"]
    journal = httpx.get(f"{stack.url}/v1/runs/{fork['run_id']}/journal", timeout=30).json()
    calls = {c["future"]: c for c in journal["calls"]}
    assert calls[draft["headers"]["future"]]["replayed"] == "journal"
    assert calls[at]["replayed"] == "override"
    assert all(c.get("replayed") is None for f, c in calls.items()
               if f not in ("0", at, draft["headers"]["future"]))
    assert "llm" not in {e["event"] for e in journal["events"]}  # the draft was not redone
    bad = httpx.post(f"{stack.url}/v1/runs/{original['run_id']}/fork", json={"at": "99"},
                     timeout=30)
    assert bad.status_code == 422, bad.text
    assert httpx.post(f"{stack.url}/v1/runs/{original['run_id']}/fork", json={"to": at},
                      timeout=30).status_code == 422


@pytest.fixture
def hosts(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A controller, two hosts and a gateway as separate processes (so one host can die)."""
    env = {"TOOLUSE_DIR": str(tmp_path), "NALAR_LLM_TIME_SCALE": "0.01"}
    with killable_hosts(APP, nats_url, redis_url, tmp_path, env) as handle:
        yield handle


def test_a_host_killed_mid_lifetime_resumes_with_no_task_run_twice(
        hosts: dict[str, Any]) -> None:
    run = start(hosts["url"], "durable", wait=None, input=None)["run_id"]
    rows, _ = kill_the_driver_host_mid_run(hosts, run)
    assert [f["method"].removeprefix("durable__v1_0_0__") for f in rows
            if f["agent"] == "tools"] == ["first", "then", "wait_for_gate", "after_gate",
                                          "last"]
    done = [line for line in executions_log(hosts["dir"]) if line != "wait_for_gate G"]
    assert done == ["first", "last"]  # the Task before the crash ran once, the one after too
    heads = [r["headers"] for r in executions(hosts["url"], run)]
    assert [h["node"] for h in heads] == ["first", "then", "wait_for_gate", "after_gate",
                                          "last"]
    assert len({h["future"] for h in heads}) == 5  # each execution recorded once


def test_the_same_graph_runs_in_local_mode(stack: StackHandle) -> None:
    import asyncio

    from nalar.local import run_local

    local = asyncio.run(run_local(str(APP), "review", {"input": {"topic": "futures"}},
                                  time_scale=0.01))
    assert local == {"published": True, "facts": "ok", "style": "ok", "round": 3}
