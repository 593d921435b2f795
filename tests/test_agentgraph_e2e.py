"""Agent graphs on a real stack (tests/apps/agentgraphs): a lifetime walks Task → Plan →
Task, each execution a future with an execution record (`GET /v1/runs/{id}/executions`,
`nalar runs executions ID`), a PARALLEL fan-out joined again, several versions of a YAML
graph live at once, and an iteration cap that stops a cycle."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from agent_runs import futures, start
from e2e_stack import ROOT, StackHandle, start_stack, stop_stack

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "agentgraphs"


@pytest.fixture(scope="module")
def stack(nats_url: str, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("agentgraphs") / "nalar-up.log"
    handle = start_stack(APP, nats_url, redis_url, log, nodes=1, hosts_per_node=2,
                         args=("--llm-time-scale", "0.01"))
    yield handle
    stop_stack(handle)


def executions(stack: StackHandle, run: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/v1/runs/{run}/executions", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["executions"]  # type: ignore[no-any-return]


def test_a_lifetime_records_every_execution(stack: StackHandle) -> None:
    run = start(stack.url, "review", input={"topic": "futures"})
    assert run["status"] == "succeeded", run
    assert run["result"] == {"published": True, "facts": "ok", "style": "ok", "round": 3}
    nodes = ["draft", "critic"] * 3 + ["check_facts", "check_style", "merge", "publish"]
    assert [f["method"] for f in futures(stack.url, run["run_id"]) if f["agent"] == "tools"] \
        == [f"review__v1_0_0__{n}" for n in nodes]
    records = executions(stack, run["run_id"])
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


def test_versions_live_at_once_and_a_cap_stops_a_cycle(stack: StackHandle) -> None:
    newest = start(stack.url, "pingpong", input=0)
    assert newest["status"] == "succeeded" and newest["result"] == "pinged 3 times", newest
    capped = start(stack.url, "pingpong", input=0, version="1.0.0")
    assert capped["status"] == "failed", capped
    assert capped["error"]["code"] == "guardrail_exceeded", capped
    assert capped["error"]["details"]["node"] == "ping"
    heads = [r["headers"] for r in executions(stack, capped["run_id"])]
    assert [(h["node"], h["iteration"], h["version"]) for h in heads] == [
        ("ping", 1, "1.0.0"), ("pong", 1, "1.0.0"), ("ping", 2, "1.0.0"),
        ("pong", 2, "1.0.0"), ("ping", 3, "1.0.0"), ("pong", 3, "1.0.0")]
    unknown = start(stack.url, "pingpong", input=0, version="9.9.9")
    assert unknown["status"] == "failed" and unknown["error"]["code"] == "invalid_input"
    assert "live: 1.0.0, 2.0.0" in unknown["error"]["message"]


def test_the_same_graph_runs_in_local_mode(stack: StackHandle) -> None:
    import asyncio

    from nalar.local import run_local

    local = asyncio.run(run_local(str(APP), "review", {"input": {"topic": "futures"}},
                                  time_scale=0.01))
    assert local == {"published": True, "facts": "ok", "style": "ok", "round": 3}
