"""What the agent tests share (tests/test_agentloop_e2e.py, test_openai_agents_e2e.py,
test_langgraph_e2e.py): scripted tool calls for the simulated engine, starting runs over
HTTP and reading back their futures, a stack whose policy and guardrails files a test may
rewrite, and the lines tools write per execution."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from e2e_stack import NO_LIMITS, OPEN_POLICY, StackHandle, start_stack, stop_stack, two_hosts


def call(tool: str, /, **arguments: Any) -> dict[str, Any]:
    """One scripted tool call (`NALAR_LLM_SIM_PARAMS={"script": ...}`)."""
    return {"name": tool, "arguments": arguments}


def engine_env(script: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """A fast simulated engine that follows `script`."""
    return {"NALAR_LLM_TIME_SCALE": "0.01",
            "NALAR_LLM_SIM_PARAMS": json.dumps({"script": script})}


@contextmanager
def governed_stack(app: Path, nats_url: str, redis_url: str, folder: Path,
                   env: dict[str, str]) -> Iterator[StackHandle]:
    """One node, two hosts, with `folder/policy.yaml` (open) and `folder/guardrails.yaml`
    (no limits) that a test may rewrite (`e2e_stack.live_config`)."""
    (folder / "policy.yaml").write_text(OPEN_POLICY)
    (folder / "guardrails.yaml").write_text(NO_LIMITS)
    handle = start_stack(app, nats_url, redis_url, folder / "nalar-up.log", nodes=1,
                         hosts_per_node=2, extra_env={
                             **env, "NALAR_AUTH_POLICY_FILE": str(folder / "policy.yaml"),
                             "NALAR_GUARDRAILS_FILE": str(folder / "guardrails.yaml")})
    try:
        yield handle
    finally:
        stop_stack(handle)


def executions(d: Path) -> list[str]:
    """The lines the test apps' tools write, one per execution, in `d/executions.log`."""
    path = d / "executions.log"
    return path.read_text().splitlines() if path.exists() else []


def start(url: str, workflow: str, wait: float | None = 60, **inputs: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/workflows/{workflow}/runs",
                   params={"wait": wait} if wait else {}, json={"input": inputs}, timeout=90)
    assert r.status_code in (200, 202), r.text
    return r.json()  # type: ignore[no-any-return]


def futures(url: str, run: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/v1/runs/{run}/futures", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["futures"]  # type: ignore[no-any-return]


def steps(url: str, run: str) -> list[str]:
    """`agent.method` of the run's futures, in order, the driver left out."""
    return [f"{f['agent']}.{f['method']}" for f in futures(url, run) if f["future"] != "0"]


@contextmanager
def killable_hosts(app: Path, nats_url: str, redis_url: str, folder: Path,
                   env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A controller, two hosts and a gateway as separate processes (so one host can die),
    as `kill_the_driver_host_mid_run` takes them: its URL, processes and `folder`."""
    with two_hosts(app, nats_url, redis_url, folder / "logs", extra_env=env) as handle:
        yield {"url": handle.url, "procs": handle.procs, "dir": folder}


def kill_the_driver_host_mid_run(hosts: dict[str, Any], run: str,
                                 gate: str = "G") -> tuple[list[dict[str, Any]], list[int]]:
    """While the run's tool `wait_for_gate(gate)` runs: SIGKILL the host running the run's
    driver, open the gate, and wait for the run to finish on the other host. Returns the run's
    futures and how many LLM requests each future that asked one made."""
    import signal

    from nalar_common.testing import wait_until_sync

    url, d = hosts["url"], hosts["dir"]
    wait_until_sync(lambda: executions(d), until=lambda e: f"wait_for_gate {gate}" in e,
                    what=f"the tool waiting for gate {gate} running")
    events = httpx.get(f"{url}/v1/runs/{run}/journal", timeout=30).json()["events"]
    host = str(next(e for e in events if e["event"] == "started")["host"])
    hosts["procs"][f"host-{host}"].send_signal(signal.SIGKILL)
    hosts["procs"][f"host-{host}"].wait(10)
    (d / f"{gate}.open").touch()
    view = wait_until_sync(lambda: httpx.get(f"{url}/v1/runs/{run}").json(), timeout=90,
                           until=lambda v: v["status"] in ("succeeded", "failed"),
                           what="the run to finish on the other host")
    assert view["status"] == "succeeded", json.dumps(view)
    assert view["result"] == "finished"
    rows = futures(url, run)
    survivor = "b" if host == "a" else "a"
    assert next(f for f in rows if f["future"] == "0")["executor"] == f"{survivor}._driver"
    events = httpx.get(f"{url}/v1/runs/{run}/journal", timeout=30).json()["events"]
    asked: dict[str, int] = {}
    for e in events:
        if e["event"] == "llm":
            asked[e["future"]] = asked.get(e["future"], 0) + 1
    return rows, sorted(asked.values())
