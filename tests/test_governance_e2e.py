"""Governance on a real stack: each guardrail action (config/guardrails.yaml, reread while the
stack runs) fires at its limit and not before, per run, session and tenant, before the spend;
the audit journal records every call; a replay serves the recorded results, calls no tool,
and an override changes what follows it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from e2e_stack import NO_LIMITS, ROOT, StackHandle, live_config, start_stack, stop_stack
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "governed"
PROMPT = 5  # "user: topic <i> part <j>" is 5 simulated tokens
MAX_TOKENS = 8
WORST = PROMPT + MAX_TOKENS  # what a request reserves


@pytest.fixture(scope="module")
def guard_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("guard") / "guardrails.yaml"
    path.write_text(NO_LIMITS)
    return path


@pytest.fixture(scope="module")
def governed(nats_url: str, redis_url: str, guard_path: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("governed") / "nalar-up.log"
    handle = start_stack(APP, nats_url, redis_url, log, nodes=1, extra_env={
        "NALAR_GUARDRAILS_FILE": str(guard_path),
        "GOVERNED_TOOL_LOG": str(log.parent / "tools.log")})
    yield handle
    stop_stack(handle)


@pytest.fixture
def limits(guard_path: Path) -> Iterator[Callable[[str], None]]:
    """Write the stack's guardrails; its controllers use them from the next call on."""
    with live_config(guard_path, NO_LIMITS) as write:
        yield write


def start(stack: StackHandle, wait: float | None = 30, workflow: str = "spend",
          **inputs: Any) -> dict[str, Any]:
    session = inputs.pop("session_id", None)
    body: dict[str, Any] = {"input": inputs if workflow != "spend" else
                            {"max_tokens": MAX_TOKENS, **inputs}}
    if session:
        body["session_id"] = session
    r = httpx.post(f"{stack.url}/v1/workflows/{workflow}/runs",
                   params={"wait": wait} if wait else {}, json=body, timeout=60)
    assert r.status_code in (200, 202), r.text
    return r.json()  # type: ignore[no-any-return]


def get(stack: StackHandle, path: str) -> Any:
    r = httpx.get(f"{stack.url}{path}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def requests_made(stack: StackHandle, run: str) -> list[int]:
    """Tokens of every LLM request the run's agents made (from the usage on its futures)."""
    return [u["prompt_tokens"] + u["completion_tokens"]
            for f in get(stack, f"/v1/runs/{run}/futures")["futures"]
            for u in (f.get("usage") or {}).get("llm", [])]


def wait_status(stack: StackHandle, run: str, status: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until_sync(lambda: get(stack, f"/v1/runs/{run}"),  # type: ignore[no-any-return]
                           until=lambda view: view["status"] == status, timeout=timeout,
                           what=f"run {run} {status}")


def test_reject_stops_the_call_past_the_limit_and_not_before(
        governed: StackHandle, limits: Callable[[str], None]) -> None:
    limits("limits: [{name: writes, iterations: 3, agent: Writer, action: reject}]")
    at = start(governed, calls=3)
    assert at["status"] == "succeeded" and at["result"]["stopped"] is None
    past = start(governed, calls=5)
    assert past["status"] == "succeeded" and len(past["result"]["done"]) == 3
    assert past["result"]["stopped"] == {"guardrail": "writes", "scope": "run",
                                         "measure": "iterations", "max": 3.0, "value": 3.0,
                                         "action": "reject", "agent": "Writer",
                                         "future": "4", "method": "write"}  # its place
    # LLM requests are checked one by one, inside an agent call, before the engine sees them
    limits("limits: [{name: requests, llm_calls: 4, action: reject}]")
    at = start(governed, calls=2, requests=2)
    assert at["result"]["stopped"] is None and len(requests_made(governed, at["run_id"])) == 4
    past = start(governed, calls=3, requests=2)
    stopped = past["result"]["stopped"]
    assert stopped["guardrail"] == "requests" and stopped["value"] == 4.0
    assert len(past["result"]["done"]) == 2
    assert len(requests_made(governed, past["run_id"])) == 4  # the 5th never ran


def test_abort_cancels_the_run_before_its_tokens_pass_the_limit(
        governed: StackHandle, limits: Callable[[str], None]) -> None:
    limits("limits: [{name: budget, tokens: 40, action: abort}]")
    fits = start(governed, calls=2)  # at most 2 x 13 worst case: never near the limit
    assert fits["status"] == "succeeded" and fits["result"]["stopped"] is None
    over = start(governed, calls=6)
    assert over["status"] == "cancelled", over
    err = over["error"]
    assert err["code"] == "cancelled" and err["details"]["guardrail"] == "budget"
    assert err["details"]["action"] == "abort"
    used = requests_made(governed, over["run_id"])
    assert sum(used) <= 40 < sum(used) + WORST  # the next request's worst case would cross
    assert err["details"]["value"] == sum(used)


def test_pause_holds_the_run_until_its_resume_signal(
        governed: StackHandle, limits: Callable[[str], None]) -> None:
    limits("limits: [{name: gate, iterations: 2, agent: Writer, action: pause}]")
    run = start(governed, wait=None, calls=4)["run_id"]
    view = wait_status(governed, run, "paused")
    assert view["paused_by"]["guardrail"] == "gate" and view["paused_by"]["value"] == 2
    # it stays paused: a later run's call goes through the same controller and finishes,
    # while the third call of this one still waits and nothing else of it ran
    assert start(governed, calls=1)["status"] == "succeeded"
    assert get(governed, f"/v1/runs/{run}")["status"] == "paused"
    assert len(requests_made(governed, run)) == 2
    r = httpx.post(f"{governed.url}/v1/runs/{run}/signals/resume",
                   json={"value": "approved by test"}, timeout=30)
    assert r.status_code == 202 and r.json()["lifted"] == ["gate"], r.text
    done = wait_status(governed, run, "succeeded")
    assert len(done["result"]["done"]) == 4 and done["result"]["stopped"] is None
    resumed = [e for e in _journal(governed, run) if e["event"] == "resumed"]
    assert resumed[0]["by"]["name"] == "test" and resumed[0]["value"] == "approved by test"
    again = httpx.post(f"{governed.url}/v1/runs/{run}/signals/resume", json={"value": None})
    assert again.status_code == 409
    # an LLM request can pause too, inside its agent call
    limits("limits: [{name: gate2, llm_calls: 1, action: pause}]")
    run = start(governed, wait=None, calls=2)["run_id"]
    assert wait_status(governed, run, "paused")["paused_by"]["measure"] == "llm_calls"
    assert len(requests_made(governed, run)) == 1
    httpx.post(f"{governed.url}/v1/runs/{run}/signals/resume", json={"value": None})
    assert len(wait_status(governed, run, "succeeded")["result"]["done"]) == 2
    fits = start(governed, calls=1)  # at its limit: no pause
    assert fits["status"] == "succeeded"


def test_sessions_and_tenants_share_their_counts(
        governed: StackHandle, limits: Callable[[str], None]) -> None:
    limits("limits: [{name: per-session, llm_calls: 3, scope: session}]")
    session = f"s{time.time_ns()}"
    first = start(governed, calls=2, session_id=session)
    assert first["result"]["stopped"] is None
    second = start(governed, calls=2, session_id=session)
    assert second["result"]["stopped"]["scope"] == "session"
    assert len(second["result"]["done"]) == 1
    assert start(governed, calls=2)["result"]["stopped"] is None  # another session
    r = redis.Redis.from_url(governed.redis_url)
    for key in r.scan_iter(f"{governed.prefix}:nalar:guard:tenant:default*"):
        r.delete(key)
    limits("limits: [{name: per-tenant, llm_calls: 2, scope: tenant, window: 1h, "
           "match: {tenant: default}}]")
    assert start(governed, calls=1)["result"]["stopped"] is None
    other = start(governed, calls=2)  # another run and session, the same tenant
    assert other["result"]["stopped"]["guardrail"] == "per-tenant"
    assert len(other["result"]["done"]) == 1


def test_cost_and_wall_time(governed: StackHandle, limits: Callable[[str], None]) -> None:
    limits("prices: {simulated: {prompt: 1000000, completion: 1000000},\n"  # $1 a token
           "         default: {prompt: 0}}\n"
           "limits: [{name: dollars, cost: 30, action: reject}]")
    run = start(governed, calls=4)
    stopped = run["result"]["stopped"]
    assert stopped["guardrail"] == "dollars"
    used = requests_made(governed, run["run_id"])
    assert sum(used) <= 30 < sum(used) + WORST and stopped["value"] == sum(used)
    limits("limits: [{name: quick, wall_s: 1, action: reject}]")
    assert start(governed, calls=1)["result"]["stopped"] is None
    late = start(governed, calls=1, nap_s=1.5)
    assert late["result"]["stopped"]["guardrail"] == "quick"
    assert late["result"]["done"] == []


def _journal(stack: StackHandle, run: str) -> list[dict[str, Any]]:
    with httpx.stream("GET", f"{stack.url}/v1/runs/{run}/events", params={"follow": False},
                      timeout=30) as r:
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


# -- audit and replay ---------------------------------------------------------------------
def tool_calls(stack: StackHandle) -> list[str]:
    path = stack.log.parent / "tools.log"
    return path.read_text().splitlines() if path.exists() else []


def replay(stack: StackHandle, run: str, overrides: dict[str, Any] | None = None
           ) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/runs/{run}/replay", params={"wait": 30},
                      json={"overrides": overrides or {}}, timeout=60)


def test_the_journal_records_who_and_every_call(governed: StackHandle) -> None:
    run = start(governed, workflow="research", symbols=["ab", "xyz"])
    assert run["status"] == "succeeded", run
    j = get(governed, f"/v1/runs/{run['run_id']}/journal")
    assert j["started_by"]["name"] == "test" and j["input_digest"].startswith("sha256:")
    calls = {c["future"]: c for c in j["calls"]}
    assert [calls[f]["method"] for f in ("0", "1", "2", "3", "4")] == [
        "research", "quote", "quote", "judge", "judge"]
    for f in ("1", "2", "3", "4"):
        c = calls[f]
        assert c["status"] == "ok" and c["args_digest"].startswith("sha256:"), c
        assert c["node"] == "n1" and c["executor"].endswith(c["agent"]) and c["host"]
        assert set(c["policy"]) >= {"placement", "access", "guardrails"}, c
        assert c["sent_to"] == "n1" and c["parent"] == "0"
    assert calls["1"]["kind"] == "tool" and calls["3"].get("kind") is None
    assert calls["1"]["args_digest"] != calls["2"]["args_digest"]  # other symbol
    assert calls["3"]["usage"]["llm_calls"] == 1 and calls["3"]["llm_requests"] == 1
    assert calls["3"]["deps"] == ["1"] and calls["0"]["status"] == "ok"
    kinds = [e["event"] for e in j["events"]]
    assert kinds[0] == "created" and kinds[-1] == "finished" and "llm" in kinds
    out = subprocess.run([sys.executable, "-m", "nalar", "runs", "journal", run["run_id"],
                          "--url", governed.url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Analyst.judge" in out.stdout, out.stderr
    assert httpx.get(f"{governed.url}/v1/runs/nosuchrun/journal").status_code == 404


def test_a_replay_serves_the_journal_and_calls_no_tool(governed: StackHandle) -> None:
    original = start(governed, workflow="research", symbols=["ab", "xyz"])
    made = len(tool_calls(governed))
    r = replay(governed, original["run_id"])
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["run_id"] != original["run_id"] and again["replay_of"] == original["run_id"]
    assert again["result"] == original["result"]  # LLM notes included: served, not asked
    assert len(tool_calls(governed)) == made
    calls = {c["future"]: c for c in get(governed, f"/v1/runs/{again['run_id']}/journal")[
        "calls"]}
    assert {calls[f].get("replayed") for f in ("1", "2", "3", "4")} == {"journal"}


def test_an_override_changes_what_follows_and_still_calls_no_tool(
        governed: StackHandle) -> None:
    original = start(governed, workflow="research", symbols=["ab", "xyz"])
    made = len(tool_calls(governed))
    r = replay(governed, original["run_id"], {"1": {"symbol": "ab", "price": 500}})
    assert r.status_code == 200, r.text
    out = r.json()["result"]
    assert out["quotes"][0]["price"] == 500
    assert out["verdicts"][0]["verdict"] == "sell"  # judged again on the new quote
    assert out["verdicts"][1] == original["result"]["verdicts"][1]  # untouched: served
    assert len(tool_calls(governed)) == made
    calls = {c["future"]: c for c in get(governed, f"/v1/runs/{r.json()['run_id']}/journal")[
        "calls"]}
    assert calls["1"]["replayed"] == "override" and calls["3"].get("replayed") is None
    # a replay of the replay serves all of it, the override's value and the new verdict too
    twice = replay(governed, r.json()["run_id"]).json()
    assert twice["result"] == r.json()["result"] and twice["replay_of"] == r.json()["run_id"]
    assert {c.get("replayed") for c in get(governed, f"/v1/runs/{twice['run_id']}/journal")[
        "calls"] if c["future"] != "0"} == {"journal"}
    assert calls["3"]["args_digest"] != get(
        governed, f"/v1/runs/{original['run_id']}/journal")["calls"][3]["args_digest"]
    # a tool asked something new is never run: the replay fails there, unless overridden
    ordered = start(governed, workflow="research", symbols=["ab"], order=True)
    assert ordered["result"]["order"]["verdicts"] == ["buy"]
    made = len(tool_calls(governed))
    diverged = replay(governed, ordered["run_id"], {"1": {"symbol": "ab", "price": 900}})
    assert diverged.json()["status"] == "failed"
    assert diverged.json()["error"]["code"] == "replay_diverged", diverged.text
    fixed = replay(governed, ordered["run_id"], {"1": {"symbol": "ab", "price": 900},
                                                 "3": {"placed": 0, "verdicts": []}})
    assert fixed.json()["result"]["order"] == {"placed": 0, "verdicts": []}
    assert fixed.json()["result"]["verdicts"][0]["verdict"] == "sell"
    assert len(tool_calls(governed)) == made
    # what cannot be replayed says so
    assert replay(governed, ordered["run_id"], {"99": 1}).status_code == 422
    assert replay(governed, "nosuchrun").status_code == 404
    running = start(governed, wait=None, workflow="spend", calls=1, nap_s=2)
    assert replay(governed, running["run_id"]).status_code == 409
