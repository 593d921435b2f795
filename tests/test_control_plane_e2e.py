"""The control plane acting on a real stack: a session blocked behind a long job migrates to
an idle instance with its state lease (its state readable there, the old owner's late write
rejected); a stateful session never moves; rebalancing moves instances to the hot agent type
and back, paying the engine start-up time."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from e2e_stack import ROOT, Services, start_services
from nalar_common.bus import connect
from nalar_common.envelope import Envelope
from nalar_common.journal import decode
from nalar_common.settings import NatsSettings
from nalar_common.state import Lease, SessionStore, WriteOutcome
from nalar_common.subjects import Names
from nalar_common.testing import wait_until

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "control"
P = "nalar_global_controller.policies"


def _start(svc: Services) -> None:
    svc.wait_until(lambda: httpx.get(f"{svc.url}/readyz").status_code == 200)


def _post(svc: Services, wf: str, session: str, wait: float | None = None,
          **input: Any) -> dict[str, Any]:
    r = httpx.post(f"{svc.url}/v1/workflows/{wf}/runs", params={"wait": wait} if wait else {},
                   json={"input": input, "session_id": session}, timeout=(wait or 0) + 30)
    assert r.status_code in (200, 202), r.text
    return r.json()  # type: ignore[no-any-return]


def _result(svc: Services, run: str, timeout: float = 60) -> dict[str, Any]:
    return svc.wait_until(lambda: httpx.get(f"{svc.url}/v1/runs/{run}", timeout=10).json(),
                          until=lambda view: view["status"] in ("succeeded", "failed",
                                                                "cancelled"),
                          timeout=timeout, what=f"run {run} to finish")


def _report(svc: Services, until: Callable[[dict[str, Any]], object], what: str,
            timeout: float = 30) -> dict[str, Any]:
    """The first report of a local controller (to the global controller: per instance its
    queue, in flight, ...) that passes `until`."""
    async def watch() -> dict[str, Any]:
        nc = await nats.connect(svc.nats_url)
        try:
            sub = await nc.subscribe(Names(svc.prefix).telemetry("*"))

            async def next_report() -> dict[str, Any]:
                msg = await sub.next_msg(timeout=5)
                return Envelope.decode(msg.data).body

            return await wait_until(next_report, until=until,  # type: ignore[no-any-return]
                                    what=what, timeout=timeout, interval=0,
                                    ignore=(nats.errors.TimeoutError,))
        finally:
            await nc.close()

    return asyncio.run(watch())


def _row(report: dict[str, Any], instance: str) -> dict[str, Any]:
    return report["instances"].get(instance) or {}


def _instance(svc: Services, agent: str, pid: int) -> str:
    return next(str(i["instance"]) for i in httpx.get(f"{svc.url}/v1/cluster").json()[
        "instances"] if i["agent"] == agent and i["pid"] == pid)


def _started(flags: Path, name: str, svc: Services) -> int:
    svc.wait_until(lambda: (flags / f"{name}.started").exists(), what=f"{name} to start")
    return int((flags / f"{name}.started").read_text())


async def _events(nats_url: str, prefix: str, run: str, event: str) -> list[dict[str, Any]]:
    """The run's journal events of one kind, every one stored now."""
    names = Names(prefix)
    bus = await connect(NatsSettings(url=nats_url, prefix=prefix), names, name="test")
    try:
        return [decode(m) for m in await bus.read_all(names.runs_stream,
                                                      names.run_event(run, event))]
    finally:
        await bus.close()


@pytest.fixture(params=["one node", "two nodes"])
def two_workers(request: pytest.FixtureRequest, nats_url: str, redis_url: str,
                tmp_path: Path) -> Iterator[tuple[Services, Path]]:
    """Two instances of each agent: on one node, or one on each of two nodes (then a
    migration republishes the calls to the other node)."""
    flags = tmp_path / "flags"
    flags.mkdir()
    second = "n2" if request.param == "two nodes" else "n1"
    host = {"NALAR_AGENT_HOST_AGENTS": "Worker,Sticky"}
    controllers = [("lc", "nalar_local_controller", {"NALAR_NODE_NAME": "n1"})]
    if second == "n2":
        controllers.append(("lc2", "nalar_local_controller", {"NALAR_NODE_NAME": "n2"}))
    svc = start_services(APP, nats_url, redis_url, tmp_path / "logs", [
        ("gc", "nalar_global_controller", {}), *controllers,
        ("h1", "nalar_agent_host", {**host, "NALAR_NODE_NAME": "n1",
                                    "NALAR_AGENT_HOST_HOST_ID": "h1"}),
        ("h2", "nalar_agent_host", {**host, "NALAR_NODE_NAME": second,
                                    "NALAR_AGENT_HOST_HOST_ID": "h2"}),
        ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_TEST_FLAGS": str(flags), "NALAR_GC_POLICIES":
                  f"{P}:LeastLoadedRouting,{P}:SessionAffinity,{P}:HeadOfLineMigration"})
    try:
        _start(svc)
        yield svc, flags
    finally:
        for name in ("a", "b", "sa", "sb"):
            (flags / f"{name}.go").touch()
        svc.stop()


def _entry_node(agent: str, session: str, nodes: list[str]) -> str:
    """Where a stateful agent's session enters (rendezvous hash, as `ClusterView`)."""
    return max(nodes, key=lambda n: hashlib.sha256(f"{agent}|{session}|{n}".encode()).digest())


def _block_both(svc: Services, flags: Path, agent: str, names: tuple[str, str]) -> dict[int, str]:
    """Start one held call per instance (sessions of their own); pid -> its hold name. A
    stateful agent's sessions are placed by hash: pick hog sessions that enter each node."""
    nodes = sorted({i["node"] for i in httpx.get(f"{svc.url}/v1/cluster").json()["instances"]
                    if i["agent"] == agent})
    sessions: list[str] = []
    while len(sessions) < len(names):
        candidate = f"hog-{uuid.uuid4().hex[:6]}"
        want = nodes[len(sessions) % len(nodes)]
        if agent != "Sticky" or _entry_node(agent, candidate, nodes) == want:
            sessions.append(candidate)
    for n, session in zip(names, sessions, strict=True):
        _post(svc, "hold", session, agent=agent, name=n)
    return {_started(flags, n, svc): n for n in names}


def test_head_of_line_migration_moves_calls_and_state_lease(
        two_workers: tuple[Services, Path]) -> None:
    svc, flags = two_workers
    session = "vip-" + uuid.uuid4().hex[:6]
    first = _post(svc, "bump", session, wait=30)["result"]
    assert first["n"] == 1
    home = first["pid"]  # the instance that holds the session's state and cache now
    # callers on any node send the session there once the policy names it (affinity)
    svc.wait_until(lambda: session in httpx.get(f"{svc.url}/v1/policy").json()[
        "snapshot"]["affinity"], what="the session's affinity in the snapshot")
    holders = _block_both(svc, flags, "Worker", ("a", "b"))
    assert set(holders) != {home} and home in holders, holders  # one hold on each instance
    other = next(pid for pid in holders if pid != home)

    # a call of the old owner still holds the session's state lease (a zombie, e.g. its
    # controller lost track of it); without a migration the next call would wait for it
    async def take_lease() -> Lease | None:
        store = SessionStore.from_url(svc.redis_url, Names(svc.prefix))
        try:
            return await store.acquire(session, f"n1-{home}/zombie", 60_000, agent="Worker")
        finally:
            await store.close()

    zombie = asyncio.run(take_lease())
    assert zombie is not None

    run = _post(svc, "bump", session)["run_id"]  # affinity: queued at home, behind "a"/"b"
    at_home = _instance(svc, "Worker", home)
    _report(svc, lambda r: session in _row(r, at_home).get("queued_sessions", ()),
            what=f"the session's call queued at {at_home}")
    assert httpx.get(f"{svc.url}/v1/runs/{run}").json()["status"] == "running"
    (flags / f"{holders[other]}.go").touch()  # the other instance goes idle

    view = _result(svc, run, timeout=20)
    assert view["status"] == "succeeded", view
    assert view["result"] == {"n": 2, "pid": other}  # ran there, on the state left at home
    moved = asyncio.run(_events(svc.nats_url, svc.prefix, run, "migrated"))
    assert moved and moved[0]["session"] == session and moved[0]["to"].startswith("h")
    assert not (flags / f"{holders[home]}.go").exists()  # home was busy all along

    async def late_write() -> int:
        store = SessionStore.from_url(svc.redis_url, Names(svc.prefix))
        try:
            outcome, _ = await store.write_state(zombie, "zombie-op", {"n": 99})
            return outcome
        finally:
            await store.close()

    assert asyncio.run(late_write()) == WriteOutcome.FENCED
    info = httpx.get(f"{svc.url}/v1/sessions/{session}").json()
    assert info["agents"][0]["version"] == 2  # two writes: the first call's and the moved one's
    (flags / f"{holders[home]}.go").touch()


def test_a_stateful_session_is_never_migrated(two_workers: tuple[Services, Path]) -> None:
    svc, flags = two_workers
    session = "conv-" + uuid.uuid4().hex[:6]
    home = _post(svc, "touch", session, wait=30)["result"]  # pinned to this instance now
    holders = _block_both(svc, flags, "Sticky", ("sa", "sb"))
    assert home in holders and len(holders) == 2, holders
    other = next(pid for pid in holders if pid != home)
    run = _post(svc, "touch", session)["run_id"]  # queued behind the hold at home
    at_home, idle = _instance(svc, "Sticky", home), _instance(svc, "Sticky", other)
    (flags / f"{holders[other]}.go").touch()
    _report(svc, lambda r: idle in r["instances"] and _row(r, idle)["inflight"] == 0 and
            _row(r, idle)["queue"] == 0, what=f"{idle} idle")
    seen = _report(svc, lambda r: session in _row(r, at_home).get("queued_sessions", ()),
                   what=f"the session's call queued at {at_home}")
    # five policy rounds (0.5 s each) that saw it queued, with an idle instance next to it
    snap = svc.wait_until(lambda: httpx.get(f"{svc.url}/v1/policy").json()["snapshot"],
                          until=lambda s: s["generated_at"] > seen["ts"] + 2.5, timeout=30,
                          what="a policy snapshot five rounds later")
    assert not [m for m in snap["migrations"] if m["session"] == session], snap
    assert httpx.get(f"{svc.url}/v1/runs/{run}").json()["status"] == "running"
    (flags / f"{holders[home]}.go").touch()
    view = _result(svc, run)
    assert view["result"] == home
    assert asyncio.run(_events(svc.nats_url, svc.prefix, run, "migrated")) == []


def _counts(svc: Services) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in httpx.get(f"{svc.url}/v1/cluster", timeout=10).json()["instances"]:
        if not i["draining"]:
            out[i["agent"]] = out.get(i["agent"], 0) + 1
    return out


def _rebalancing_stack(nats_url: str, redis_url: str, tmp_path: Path, agents: list[str],
                       params: dict[str, float], *, host_env: dict[str, str] | None = None,
                       lc_env: dict[str, str] | None = None) -> Services:
    """One node, a host with one slot per entry of `agents` (host i runs `agents[i]`), and
    the least-loaded routing plus a `Rebalancer` with `params`."""
    host = {"NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_SLOTS": "1", **(host_env or {})}
    hosts = [(f"h{i}", "nalar_agent_host", {**host, "NALAR_AGENT_HOST_HOST_ID": f"h{i}",
                                            "NALAR_AGENT_HOST_AGENTS": agent})
             for i, agent in enumerate(agents, 1)]
    policies = [f"{P}:LeastLoadedRouting", {"class": f"{P}:Rebalancer", "params": params}]
    return start_services(APP, nats_url, redis_url, tmp_path / "logs", [
        ("gc", "nalar_global_controller", {}),
        ("lc", "nalar_local_controller", {"NALAR_NODE_NAME": "n1", **(lc_env or {})}),
        *hosts, ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_TEST_FLAGS": str(tmp_path),
                  "NALAR_GC_POLICIES": json.dumps(policies)})


def test_rebalancing_moves_instances_to_the_hot_agent_type_and_back(
        nats_url: str, redis_url: str, tmp_path: Path) -> None:
    svc = _rebalancing_stack(nats_url, redis_url, tmp_path, ["Chat", "Code", "Code"],
                             {"high": 1.5, "low": 0.5, "cooldown_s": 1.0},
                             host_env={"NALAR_AGENT_HOST_ENGINE_STARTUP_S": "0.5"})
    try:
        _start(svc)
        svc.wait_until(lambda: _counts(svc) == {"Chat": 1, "Code": 2, "_driver": 3},
                       what="the starting layout")
        chat = _post(svc, "burst", "load-chat", agent="Chat", n=30, seconds=0.4)["run_id"]
        svc.wait_until(lambda: _counts(svc).get("Chat") == 2, timeout=30,
                       what="a second Chat instance")
        assert _counts(svc)["Code"] == 1  # taken from the idle type, never below min
        chat_view = _result(svc, chat, timeout=60)
        assert chat_view["status"] == "succeeded" and len(chat_view["result"]) == 30
        assert len(set(chat_view["result"])) == 2  # both Chat instances served the burst

        code = _post(svc, "burst", "load-code", agent="Code", n=30, seconds=0.4)["run_id"]
        svc.wait_until(lambda: _counts(svc).get("Code") == 2, timeout=30,
                       what="the Code instance back")
        assert _counts(svc)["Chat"] == 1
        code_view = _result(svc, code, timeout=60)
        assert code_view["status"] == "succeeded" and len(code_view["result"]) == 30
    finally:
        svc.stop()


def test_a_node_starts_and_stops_host_processes_when_provisioned(
        nats_url: str, redis_url: str, tmp_path: Path) -> None:
    """No host has a free slot, but the node's controller may start one more host process:
    the hot agent type gets a new instance there."""
    svc = _rebalancing_stack(nats_url, redis_url, tmp_path, ["Chat", "Code"],
                             {"cooldown_s": 30.0}, lc_env={"NALAR_LC_SPAWN_HOSTS": "1"})
    try:
        _start(svc)
        run = _post(svc, "burst", "load-chat", agent="Chat", n=30, seconds=0.3)["run_id"]
        svc.wait_until(lambda: _counts(svc).get("Chat") == 2, timeout=30,
                       what="a Chat instance in a new host process")
        hosts = {i["host"] for i in httpx.get(f"{svc.url}/v1/cluster").json()["instances"]
                 if i["agent"] == "Chat"}
        assert "h1" in hosts and any(h.startswith("n1-p1-") for h in hosts), hosts
        assert _counts(svc)["Code"] == 1  # nothing taken from the other type
        view = _result(svc, run, timeout=60)
        assert view["status"] == "succeeded" and len(set(view["result"])) == 2
    finally:
        svc.stop()


def test_priorities_reorder_a_queue(nats_url: str, redis_url: str, tmp_path: Path) -> None:
    """Behind a held call, queued calls run by priority: the policy's session priority
    first, then the run's own priority (inherited by its calls), then the rest in order."""
    flags = tmp_path / "flags"
    flags.mkdir()
    priority = {"class": f"{P}:SessionPriority", "params": {"sessions": {"gold": 9}}}
    svc = start_services(APP, nats_url, redis_url, tmp_path / "logs", [
        ("gc", "nalar_global_controller", {}),
        ("lc", "nalar_local_controller", {"NALAR_NODE_NAME": "n1"}),
        ("h1", "nalar_agent_host", {"NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_HOST_ID": "h1",
                                    "NALAR_AGENT_HOST_AGENTS": "Worker"}),
        ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_TEST_FLAGS": str(flags),
                  "NALAR_GC_POLICIES": json.dumps([f"{P}:LeastLoadedRouting", priority])})
    try:
        _start(svc)
        _post(svc, "hold", "hog", agent="Worker", name="a")
        _started(flags, "a", svc)
        runs = {}
        for session, prio in [("plain", 0), ("gold", 0), ("urgent", 5)]:
            r = httpx.post(f"{svc.url}/v1/workflows/bump/runs", timeout=30, json={
                "input": {}, "session_id": session, "priority": prio})
            runs[session] = r.json()["run_id"]
        svc.wait_until(lambda: "gold" in httpx.get(f"{svc.url}/v1/policy").json()[
            "snapshot"]["priorities"], what="the policy's priorities")
        worker = next(i["instance"] for i in httpx.get(f"{svc.url}/v1/cluster").json()[
            "instances"] if i["agent"] == "Worker")
        # the three calls are queued there, in the order the snapshot's priorities give
        _report(svc, lambda r: _row(r, worker).get("queued_sessions") == [
            "gold", "urgent", "plain"], what=f"the three sessions queued at {worker} by "
            "priority")
        (flags / "a.go").touch()
        started = {}
        for session, run in runs.items():
            assert _result(svc, run)["status"] == "succeeded"
            futures = httpx.get(f"{svc.url}/v1/runs/{run}/futures").json()["futures"]
            started[session] = next(f["timings"]["started"] for f in futures
                                    if f["agent"] == "Worker")
        assert sorted(started, key=started.__getitem__) == ["gold", "urgent", "plain"]
    finally:
        (flags / "a.go").touch()
        svc.stop()
