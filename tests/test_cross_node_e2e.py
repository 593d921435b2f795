"""Regression: a chain of futures across two nodes must not stall.

Two nodes, each agent on only one of them: n1 runs a local controller and a host with `Alpha`
and the workflow drivers, n2 a local controller and a host with only `Beta`. Every link of a
chain that alternates Alpha and Beta (nothing awaited in between), a call whose arguments hold
futures of both nodes, and agent methods that call the other node's agent and wait, all cross
nodes. Each run must finish with the right value well within its `?wait`.

The local controllers' periodic re-check of pending dependencies (a backstop every 5 s by
default) is turned off, so a dependency result a controller fails to notice shows as a stall
instead of a 5 s hiccup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import nats
import pytest
from e2e_stack import ROOT, Services, start_services
from nalar_common.cluster import InstanceInfo

pytestmark = pytest.mark.e2e

SPLIT_APP = ROOT / "tests" / "apps" / "split"
H1, H2 = "n1-h1", "n2-h1"  # host ids; executors are `<host>.<agent>`
ALPHA, BETA, DRIVER = f"{H1}.Alpha", f"{H2}.Beta", f"{H1}._driver"
# a run of a few cross-node hops takes milliseconds; anything near a controller's timer or
# backstop (seconds) means some hop stalled
RUN_BOUND_S = 25.0  # a stalled hop waits for a 30 s recheck; a loaded machine is slow, not stalled


async def _instances(nats_url: str, bucket: str) -> dict[str, InstanceInfo]:
    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        kv = await nc.jetstream().key_value(bucket)
        out = {}
        for key in await kv.keys():
            entry = await kv.get(key)
            if entry.value:
                out[key] = InstanceInfo.decode(entry.value)
        return out
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def split(nats_url: str, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    log_dir = tmp_path_factory.mktemp("cross-node")
    svc = start_services(SPLIT_APP, nats_url, redis_url, log_dir, [
        ("lc-n1", "nalar_local_controller", {"NALAR_NODE_NAME": "n1"}),
        ("lc-n2", "nalar_local_controller", {"NALAR_NODE_NAME": "n2"}),
        ("host-n1", "nalar_agent_host", {"NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_HOST_ID": H1,
                                         "NALAR_AGENT_HOST_AGENTS": "Alpha"}),
        ("host-n2", "nalar_agent_host", {"NALAR_NODE_NAME": "n2", "NALAR_AGENT_HOST_HOST_ID": H2,
                                         "NALAR_AGENT_HOST_AGENTS": "Beta",
                                         "NALAR_AGENT_HOST_DRIVERS": "false"}),
        ("gateway", "nalar_gateway", {"NALAR_NODE_NAME": "n1"}),
    ], extra_env={"NALAR_LC_RECHECK_INTERVAL_S": "3600"})
    bucket = f"{svc.prefix}_nalar_instances"

    def ready() -> bool:
        r = httpx.get(f"{svc.url}/readyz", timeout=2)
        if r.status_code != 200 or r.json()["driver_instances"] < 1 \
                or r.json()["nodes"] != ["n1", "n2"]:
            return False
        # both agents routable: their instances are in KV, each on its own node only
        live = asyncio.run(_instances(svc.nats_url, bucket))
        return {ALPHA, BETA, DRIVER} <= set(live)

    try:
        svc.wait_until(ready, timeout=60, what="both nodes with Alpha, Beta and the driver")
        live = asyncio.run(_instances(svc.nats_url, bucket))
        assert {k: (i.node, i.agent) for k, i in live.items()} == {
            ALPHA: ("n1", "Alpha"), DRIVER: ("n1", "_driver"), BETA: ("n2", "Beta")}
        yield svc
    finally:
        svc.stop()


def _run(svc: Services, workflow: str, input: dict[str, Any]) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    r = httpx.post(f"{svc.url}/v1/workflows/{workflow}/runs", params={"wait": 30},
                   json={"input": input}, timeout=40)
    elapsed = time.monotonic() - t0
    body = r.json()
    assert r.status_code == 200 and body["status"] == "succeeded", \
        f"{workflow} after {elapsed:.1f}s: {r.status_code} {body}\n{svc.logs()}"
    assert elapsed < RUN_BOUND_S, f"{workflow} took {elapsed:.1f}s (stalled hop?): {body}"
    return body, elapsed


def _futures(svc: Services, run: str) -> dict[str, dict[str, Any]]:
    rows = httpx.get(f"{svc.url}/v1/runs/{run}/futures").json()["futures"]
    return {f["future"]: f for f in rows}


def _expected_chain(x: int, links: int) -> int:
    vals = [x + 1]
    for i in range(1, links):
        vals.append(vals[-1] * 2 if i % 2 else vals[-1] + 1)
    return sum(vals[0::2]) + sum(vals[1::2]) + vals[-1] + 1


@pytest.mark.parametrize("workflow", ["chain", "achain"])
def test_chain_alternating_nodes(split: Services, workflow: str) -> None:
    links = 6
    body, _ = _run(split, workflow, {"x": 1, "links": links})
    assert body["result"] == _expected_chain(1, links) == 77
    fut = _futures(split, body["run_id"])
    assert set(fut) == {"0", *(str(i) for i in range(1, links + 3))}, fut
    assert all(f["status"] == "succeeded" for f in fut.values()), fut
    assert fut["0"]["executor"] == DRIVER
    for i in range(1, links + 1):
        f = fut[str(i)]
        assert f["executor"] == (ALPHA if i % 2 else BETA), f
        assert f["deps"] == ([] if i == 1 else [str(i - 1)]), f
    mixed, last = fut[str(links + 1)], fut[str(links + 2)]
    assert (mixed["agent"], mixed["method"], mixed["executor"]) == ("Beta", "total", BETA)
    assert set(mixed["deps"]) == {str(i) for i in range(1, links + 1)}, mixed
    assert (last["executor"], last["deps"]) == (ALPHA, [str(links + 1)]), last
    # both nodes really took part
    assert {f["executor"].split(".")[0] for f in fut.values()} == {H1, H2}


@pytest.mark.parametrize("use_async", [False, True])
def test_nested_calls_across_nodes(split: Services, use_async: bool) -> None:
    depth = 4
    body, _ = _run(split, "nested", {"x": 1, "depth": depth, "use_async": use_async})
    # Alpha +1 -> Beta *2 -> Alpha +1 -> Beta *2 -> Alpha returns: ((1+1)*2+1)*2 = 10
    assert body["result"] == 10
    fut = _futures(split, body["run_id"])
    ids = ["_".join(["1"] * n) for n in range(1, depth + 2)]  # 1, 1_1, 1_1_1, ...
    assert set(fut) == {"0", *ids}, fut
    for n, fid in enumerate(ids):
        f = fut[fid]
        assert f["status"] == "succeeded", f
        assert f["executor"] == (BETA if n % 2 else ALPHA), f
        assert f["parent"] == ("0" if n == 0 else ids[n - 1]), f
        assert f["deps"] == [], f


def test_chain_inside_agent_method(split: Services) -> None:
    body, _ = _run(split, "relay", {"x": 3})
    # Beta(3)=6 -> Alpha.relay: Beta(6)=12 -> Alpha(12)=13 -> Beta(13)=26
    assert body["result"] == 26
    fut = _futures(split, body["run_id"])
    assert set(fut) == {"0", "1", "2", "2_1", "2_2", "2_3"}, fut
    assert [fut[i]["executor"] for i in ("1", "2", "2_1", "2_2", "2_3")] == \
        [BETA, ALPHA, BETA, ALPHA, BETA]
    assert [fut[i]["deps"] for i in ("1", "2", "2_1", "2_2", "2_3")] == \
        [[], ["1"], [], ["2_1"], ["2_2"]]
    assert {fut[i]["parent"] for i in ("2_1", "2_2", "2_3")} == {"2"}


def test_concurrent_cross_node_runs(split: Services) -> None:
    """Many runs at once, each hopping between the nodes: none waits for another."""
    jobs = [("chain", {"x": i, "links": 6}) for i in range(6)] + \
        [("achain", {"x": i, "links": 7}) for i in range(6)] + \
        [("nested", {"x": i, "depth": 3, "use_async": bool(i % 2)}) for i in range(4)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda j: _run(split, *j), jobs))
    for (wf, inp), (body, _) in zip(jobs, results, strict=True):
        if wf != "nested":
            assert body["result"] == _expected_chain(inp["x"], inp["links"]), (wf, inp, body)
