"""LangGraph graphs on a real stack, registered unchanged with `nalar.langgraph.workflow`
(tests/apps/graphs): each node execution a future (a super-step's nodes at once), a
conditional edge, `interrupt()` answered by a signal while the run waits holding no worker,
the graph's stream modes as `graph` events of the run, a host killed mid-graph resuming
without running a finished node again, and the same graph in local mode.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_runs import killable_hosts, start
from e2e_stack import ROOT, StackHandle, start_stack, stop_stack
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "graphs"
SCRIPT: dict[str, list[dict[str, Any]]] = {
    "plan:": [{"text": "weigh both sides"}],
    "pros:": [{"text": "it is cheap"}],
    "cons:": [{"text": "it is slow"}],
    "write:": [{"text": "a fair report"}],
}
ENGINE = {"NALAR_LLM_TIME_SCALE": "0.01", "NALAR_LLM_SIM_PARAMS": json.dumps({"script": SCRIPT})}
REPORT = {"topic": "cats", "plan": "weigh both sides",
          "notes": ["cons: it is slow", "pros: it is cheap"], "report": "a fair report"}


@pytest.fixture(scope="module")
def graphs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("graphs")


@pytest.fixture(scope="module")
def stack(nats_url: str, redis_url: str, graphs_dir: Path) -> Iterator[StackHandle]:
    handle = start_stack(APP, nats_url, redis_url, graphs_dir / "nalar-up.log", nodes=1,
                         hosts_per_node=2, extra_env={**ENGINE, "GRAPHS_DIR": str(graphs_dir)})
    yield handle
    stop_stack(handle)


def futures(url: str, run: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/v1/runs/{run}/futures", timeout=30)
    assert r.status_code == 200, r.text
    return [f for f in r.json()["futures"] if f["future"] != "0"]  # the driver left out


def events(url: str, run: str) -> list[dict[str, Any]]:
    """The run's events as `GET /v1/runs/{id}/events` serves them (server-sent events)."""
    r = httpx.get(f"{url}/v1/runs/{run}/events", params={"follow": "false"}, timeout=30)
    assert r.status_code == 200, r.text
    return [json.loads(line[len("data: "):]) for line in r.text.splitlines()
            if line.startswith("data: ")]


def graph_events(url: str, run: str, mode: str) -> list[dict[str, Any]]:
    return [e for e in events(url, run) if e["event"] == "graph" and e["mode"] == mode]


def ran(d: Path, run: str) -> list[tuple[str, str]]:
    """(node, host) of each node execution of `run`, in order (the app writes them)."""
    path = d / "executions.log"
    lines = [line.split() for line in (path.read_text().splitlines() if path.exists() else [])]
    return [(node, host) for node, host, of in lines if of == run]


def executions(d: Path, run: str) -> list[str]:
    return [node for node, _ in ran(d, run)]


def until(url: str, run: str, *status: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until_sync(lambda: httpx.get(f"{url}/v1/runs/{run}", timeout=30).json(),
                           until=lambda v: v["status"] in status, timeout=timeout,
                           what=f"run {run} {'/'.join(status)}")  # type: ignore[no-any-return]


def test_each_node_is_a_future_and_a_super_step_runs_in_parallel(stack: StackHandle,
                                                                 graphs_dir: Path) -> None:
    out = start(stack.url, "research", topic="cats")
    assert out["status"] == "succeeded", out
    assert out["result"] == REPORT
    rows = futures(stack.url, out["run_id"])
    methods = [f"{f['agent']}.{f['method']}" for f in rows]
    assert methods[0] == "tools.research__plan" and methods[3] == "tools.research__write"
    assert sorted(methods[1:3]) == ["tools.research__cons", "tools.research__pros"]
    assert [f["future"] for f in rows] == ["1", "2", "3", "4"]
    # the two nodes of the second super-step ran at once (each waits to see the other start)
    sides = [f["timings"] for f in rows[1:3]]
    assert max(t["started"] for t in sides) < min(t["finished"] for t in sides), sides
    assert sorted(executions(graphs_dir, out["run_id"])) == ["cons", "plan", "pros", "write"]
    # each node's LLM call ran inside its future, on its host's engine
    journal = httpx.get(f"{stack.url}/v1/runs/{out['run_id']}/journal", timeout=30).json()
    calls = {c["future"]: c for c in journal["calls"]}
    assert [calls[f].get("llm_requests") for f in ("1", "2", "3", "4")] == [1, 1, 1, 1]


def test_a_conditional_edge_picks_the_path(stack: StackHandle) -> None:
    out = start(stack.url, "research", topic="quick cats")
    assert out["status"] == "succeeded", out
    assert out["result"] == {"topic": "quick cats", "plan": "weigh both sides", "notes": [],
                             "report": "a fair report"}
    assert [f["method"] for f in futures(stack.url, out["run_id"])] == [
        "research__plan", "research__write"]


def test_stream_modes_are_events_of_the_run(stack: StackHandle) -> None:
    run = start(stack.url, "research", topic="cats")["run_id"]
    every = events(stack.url, run)
    graph = [e for e in every if e["event"] == "graph"]
    tasks = {e["future"]: e["node"] for e in graph if e["mode"] == "task"}
    assert tasks == {"1": "plan", "2": tasks["2"], "3": tasks["3"], "4": "write"}
    assert {tasks["2"], tasks["3"]} == {"pros", "cons"}
    # updates: what each node returned, in the step it ran
    updates = {e["node"]: (e["step"], e["data"]) for e in graph if e["mode"] == "updates"}
    assert updates == {"plan": (1, {"plan": "weigh both sides"}),
                       "pros": (2, {"notes": ["pros: it is cheap"]}),
                       "cons": (2, {"notes": ["cons: it is slow"]}),
                       "write": (3, {"report": "a fair report"})}
    # values: the state after each super-step, the input first; the last is the result
    values = [e["data"] for e in graph if e["mode"] == "values"]
    assert values[0] == {"topic": "cats", "notes": []} and values[-1] == REPORT
    assert [e["step"] for e in graph if e["mode"] == "values"] == [0, 1, 2, 3]
    # custom: what a node wrote to get_stream_writer(), journaled by its host
    [custom] = [e for e in graph if e["mode"] == "custom"]
    assert custom["node"] == "plan" and custom["future"] == "1"
    assert custom["data"] == {"progress": "planning", "topic": "cats"}
    # messages: the text a node's LLM call streamed is in `token` events of its future
    streamed: dict[str, str] = {}
    for e in every:
        if e["event"] == "token":
            streamed[tasks[e["future"]]] = streamed.get(tasks[e["future"]], "") + e["text"]
    assert streamed == {"plan": "weigh both sides", "pros": "it is cheap",
                        "cons": "it is slow", "write": "a fair report"}
    # each key once, and the checkpoints say where the graph was (LangGraph's numbering: the
    # checkpoint of step n is read by the tasks of step n + 1)
    assert len({e["key"] for e in graph}) == len(graph)
    checkpoints = [(e["step"], sorted(e["next"])) for e in graph if e["mode"] == "checkpoint"]
    assert checkpoints == [(-1, ["__start__"]), (0, ["plan"]), (1, ["cons", "pros"]),
                           (2, ["write"]), (3, [])]


def test_a_replay_serves_every_node_from_the_journal(stack: StackHandle,
                                                    graphs_dir: Path) -> None:
    original = start(stack.url, "research", topic="cats")
    r = httpx.post(f"{stack.url}/v1/runs/{original['run_id']}/replay", params={"wait": 60},
                   json={"overrides": {}}, timeout=90)
    replay = r.json()
    assert replay["status"] == "succeeded", replay
    assert replay["result"] == original["result"] == REPORT
    calls = httpx.get(f"{stack.url}/v1/runs/{replay['run_id']}/journal", timeout=30).json()[
        "calls"]
    assert [(c["method"], c.get("replayed")) for c in calls if c["future"] != "0"] == [
        ("research__plan", "journal"), ("research__cons", "journal"),
        ("research__pros", "journal"), ("research__write", "journal")]
    assert executions(graphs_dir, replay["run_id"]) == []  # no node ran


def test_interrupt_waits_for_its_signal_and_resumes(stack: StackHandle,
                                                    graphs_dir: Path) -> None:
    from nalar.langgraph import graph_state

    run = start(stack.url, "approval", wait=None, amount=5)["run_id"]
    view = until(stack.url, run, "waiting", "succeeded", "failed")
    assert view["status"] == "waiting", view
    assert view["waiting_for"] == {"signal": "interrupt-3"}  # asked by future 3: approve
    # the client finds the question: the interrupt's value, with the signal that answers it
    question = {"question": "approve?", "draft": "pay 5", "risk": "low"}
    [asked] = graph_events(stack.url, run, "interrupt")
    assert (asked["signal"], asked["node"], asked["value"]) == ("interrupt-3", "approve", question)
    state = graph_state(events(stack.url, run))  # what graph.get_state() would say
    assert state["next"] == ["approve"] and state["step"] == 1
    assert state["values"] == {"amount": 5, "draft": "pay 5", "risk": "low"}
    assert state["interrupts"] == [{"signal": "interrupt-3", "node": "approve", "step": 2,
                                    "future": "3", "value": question}]
    r = httpx.post(f"{stack.url}/v1/runs/{run}/signals/interrupt-3",
                   json={"value": {"ok": True, "by": "ann"}}, timeout=30)
    assert r.status_code == 202, r.text
    done = until(stack.url, run, "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["result"] == {"amount": 5, "draft": "pay 5", "risk": "low",
                              "decision": {"ok": True, "by": "ann"}, "outcome": "paid 5 (ann)"}
    # the node ran again from its start with the answer (a new future), as in LangGraph;
    # the two nodes before it were served from the stream when the driver ran again
    rows = futures(stack.url, run)
    nodes = [f["method"].removeprefix("approval__") for f in rows if f["agent"] == "tools"]
    assert sorted(nodes[:2]) == ["check", "draft"]
    assert nodes[2:] == ["approve", "approve", "pay"]
    assert [f["future"] for f in rows if f["agent"] == "_signal"] == ["sig-interrupt-3"]
    assert sorted(executions(graphs_dir, run)) == ["approve", "approve", "check", "draft", "pay"]
    assert graph_state(events(stack.url, run))["interrupts"] == []
    # the journal has each graph event once, though the driver ran twice
    graph = [e for e in events(stack.url, run) if e["event"] == "graph"]
    assert len({e["key"] for e in graph}) == len(graph)
    assert [e["node"] for e in graph if e["mode"] == "updates"][2:] == ["approve", "pay"]


def test_an_interrupt_answered_no_ends_the_graph(stack: StackHandle) -> None:
    run = start(stack.url, "approval", wait=None, amount=700)["run_id"]
    assert until(stack.url, run, "waiting", "failed")["status"] == "waiting"
    r = httpx.post(f"{stack.url}/v1/runs/{run}/signals/interrupt-3", json={"value": False},
                   timeout=30)
    assert r.status_code == 202, r.text
    done = until(stack.url, run, "succeeded", "failed")
    assert done["result"] == {"amount": 700, "draft": "pay 700", "risk": "high",
                              "decision": False}


def test_interrupts_of_one_super_step_and_of_one_node_each_get_a_signal(
        stack: StackHandle, graphs_dir: Path) -> None:
    from nalar.langgraph import graph_state

    url = stack.url
    run = start(url, "review", wait=None, doc="contract")["run_id"]
    assert until(url, run, "waiting", "failed")["status"] == "waiting"

    def pending() -> list[tuple[str, str, Any]]:
        return [(i["signal"], i["node"], i["value"])
                for i in graph_state(events(url, run))["interrupts"]]

    # both nodes of the super-step asked: two signals, declared at once
    assert pending() == [("interrupt-1", "legal", "legal ok? contract"),
                         ("interrupt-2", "money", "money ok?")]

    def answer(name: str, value: Any, waits: int) -> None:
        r = httpx.post(f"{url}/v1/runs/{run}/signals/{name}", json={"value": value}, timeout=30)
        assert r.status_code == 202, r.text
        wait_until_sync(lambda: [e for e in events(url, run) if e["event"] == "waiting"],
                        until=lambda w: len(w) >= waits, what=f"run {run} waiting again")

    answer("interrupt-2", "fine", waits=2)  # the other one is still unanswered: it waits on
    assert until(url, run, "waiting")["waiting_for"] == {"signal": "interrupt-1"}
    answer("interrupt-1", "yes", waits=3)  # both answered: the graph resumes, and the node
    assert pending() == [("interrupt-3", "legal", "legal sure?")]  # that asks twice asks again
    r = httpx.post(f"{url}/v1/runs/{run}/signals/interrupt-3", json={"value": "sure"},
                   timeout=30)
    assert r.status_code == 202, r.text
    done = until(url, run, "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert sorted(done["result"]["answers"]) == ["legal: yes, sure", "money: fine"]
    assert Counter(executions(graphs_dir, run)) == {"legal": 3, "money": 2}
    assert [f["method"] for f in futures(url, run) if f["agent"] == "tools"] == [
        "review__legal", "review__money", "review__legal", "review__money", "review__legal"]


# -- a host killed mid-graph ------------------------------------------------------------------
@pytest.fixture
def hosts(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A controller, two hosts and a gateway as separate processes (so one host can die)."""
    env = {**ENGINE, "GRAPHS_DIR": str(tmp_path)}
    with killable_hosts(APP, nats_url, redis_url, tmp_path, env) as handle:
        yield handle


def test_a_host_killed_mid_graph_resumes_without_running_a_node_twice(
        hosts: dict[str, Any]) -> None:
    url, d = hosts["url"], hosts["dir"]
    run = start(url, "durable", wait=None, gate="G.open")["run_id"]
    wait_until_sync(lambda: executions(d, run), until=lambda e: "gate" in e, timeout=60,
                    what="the graph's second node running")
    journal = httpx.get(f"{url}/v1/runs/{run}/journal", timeout=30).json()
    host = str(next(e for e in journal["events"] if e["event"] == "started")["host"])
    hosts["procs"][f"host-{host}"].send_signal(signal.SIGKILL)
    hosts["procs"][f"host-{host}"].wait(10)
    (d / "G.open").touch()
    view = until(url, run, "succeeded", "failed", timeout=120)
    assert view["status"] == "succeeded", json.dumps(view)
    assert view["result"] == {"gate": "G.open", "done": ["one", "gate", "two"]}
    survivor = "b" if host == "a" else "a"
    rows = futures(url, run)
    assert [f["method"] for f in rows] == ["durable__one", "durable__gate", "durable__two"]
    driver = next(f for f in httpx.get(f"{url}/v1/runs/{run}/futures", timeout=30)
                  .json()["futures"] if f["future"] == "0")
    assert driver["executor"] == f"{survivor}._driver"
    # the finished node did not run again; the node running when the host died ran again
    # only if it was running on that host (then its host lost it, as any call)
    done = ran(d, run)
    assert Counter(node for node, _ in done if node != "gate") == {"one": 1, "two": 1}, done
    gates = [h for node, h in done if node == "gate"]
    assert gates in ([survivor], [host, survivor]), done


def test_a_waiting_graph_resumes_on_another_host(hosts: dict[str, Any]) -> None:
    url, d = hosts["url"], hosts["dir"]
    run = start(url, "approval", wait=None, amount=5)["run_id"]
    assert until(url, run, "waiting", "failed")["status"] == "waiting"
    journal = httpx.get(f"{url}/v1/runs/{run}/journal", timeout=30).json()
    host = str(next(e for e in journal["events"] if e["event"] == "started")["host"])
    hosts["procs"][f"host-{host}"].send_signal(signal.SIGKILL)
    hosts["procs"][f"host-{host}"].wait(10)
    r = httpx.post(f"{url}/v1/runs/{run}/signals/interrupt-3",
                   json={"value": {"ok": True, "by": "bo"}}, timeout=30)
    assert r.status_code == 202, r.text
    view = until(url, run, "succeeded", "failed", timeout=120)
    assert view["status"] == "succeeded", json.dumps(view)
    assert view["result"]["outcome"] == "paid 5 (bo)"
    survivor = "b" if host == "a" else "a"
    # the nodes before the interrupt ran once (wherever they were placed: the session's
    # host, or both); after the signal, only the resumed node and the next, on the survivor
    done = ran(d, run)
    assert sorted(node for node, _ in done[:3]) == ["approve", "check", "draft"], done
    assert done[3:] == [("approve", survivor), ("pay", survivor)], done


# -- local mode -------------------------------------------------------------------------------
def test_local_mode_runs_the_same_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nalar.local import run_local
    from nalar_common.errors import InvalidInput

    for k, v in {**ENGINE, "GRAPHS_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    assert asyncio.run(run_local(str(APP), "research", {"topic": "cats"})) == REPORT
    quick = asyncio.run(run_local(str(APP), "research", {"topic": "quick cats"}))
    assert quick["report"] == "a fair report" and quick["notes"] == []
    # local mode has no signals: a graph that interrupts cannot wait there
    with pytest.raises(InvalidInput, match="signals"):
        asyncio.run(run_local(str(APP), "approval", {"amount": 1}))
