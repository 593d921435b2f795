"""The operator surface: the cluster as the gateway sees it, the running policy snapshot, and
switching policies at run time (a bad one is refused and the running snapshot stays; a spec
naming a class that is not allowed runs nothing, through the API or straight from KV)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from e2e_stack import StackHandle
from nalar_common.policyspec import describe
from nalar_common.subjects import Names
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e

BUILTIN = ["LeastLoadedRouting", "SessionAffinity", "HeadOfLineMigration", "SessionPriority"]
DEFAULT = [f"nalar_global_controller.policies:{name}" for name in BUILTIN]


def test_cluster_view(http: httpx.Client) -> None:
    c = http.get("/v1/cluster").json()
    assert set(c["nodes"]) == {"n1", "n2"}
    assert {"Echo", "_driver"} <= set(c["nodes"]["n1"]["agents"])
    assert any(i["instance"] == "n2-h1.Echo" for i in c["instances"])
    assert c["policy"]["policies"] == BUILTIN


def test_switch_policies_at_run_time(http: httpx.Client) -> None:
    before = http.get("/v1/policy").json()
    assert before["snapshot"]["policies"] and before["leader"]["id"]
    bad = http.put("/v1/policy", json={"policies": ["no.such.module:Nope"]})
    assert bad.status_code == 422 and "no.such.module" in bad.json()["error"]["message"]
    assert http.put("/v1/policy", json={"policies": ["nalar_global_controller.policies"]}
                    ).status_code == 422
    assert http.put("/v1/policy", json={"policies": []}).status_code == 422
    assert http.put("/v1/policy", json=["x"]).status_code == 422
    bad_params = http.put("/v1/policy", json={"policies": [
        {"class": "nalar_global_controller.policies:SessionAffinity",
         "params": {"spill_queue": -1}}]})
    assert bad_params.status_code == 422, bad_params.text
    assert bad_params.json()["error"]["details"]["errors"][0]["field"] == "policies[0]"
    unknown_param = http.put("/v1/policy", json={"policies": [
        {"class": "nalar_global_controller.policies:SessionPriority", "params": {"nope": 1}}]})
    assert unknown_param.status_code == 422 and "nope" in unknown_param.text
    assert http.get("/v1/policy").json()["config"] == before["config"]  # unchanged
    good = http.put("/v1/policy", json={"policies": [
        DEFAULT[0], "protect_session:ProtectSession",
        {"class": "nalar_global_controller.policies:SessionPriority",
         "params": {"sessions": {"gold": 7}}}]})
    assert good.status_code == 200, good.text
    try:
        snap = wait_until_sync(
            lambda: http.get("/v1/policy").json()["snapshot"], timeout=15,
            until=lambda snap: snap["policies"] == ["LeastLoadedRouting", "ProtectSession",
                                                    "SessionPriority"],
            what="a snapshot from the new policies")
        assert snap["priorities"] == {"vip": 10, "gold": 7}
        history = http.get("/v1/policy", params={"history": True}).json()["history"]
        assert len(history) >= 2
    finally:
        assert http.put("/v1/policy", json={"policies": DEFAULT}).status_code == 200


def _settled(http: httpx.Client) -> dict[str, Any]:
    """`GET /v1/policy` once the global controller runs the configured policies (an earlier
    test's last `PUT` may still be on its way)."""
    def settled(body: dict[str, Any]) -> bool:
        config = body.get("config")
        want = [describe(s) for s in config["policies"]] if config else BUILTIN
        return bool(body["snapshot"]["policies"] == want)

    return wait_until_sync(lambda: http.get("/v1/policy").json(),  # type: ignore[no-any-return]
                           until=settled, timeout=15,
                           what="a snapshot from the configured policies")


def _shell_spec(marker: Path) -> dict[str, Any]:
    return {"class": "subprocess:run", "params": {"args": ["sh", "-c", f"id > {marker}"]}}


def test_a_policy_spec_cannot_run_code(http: httpx.Client, tmp_path: Path) -> None:
    before = _settled(http)
    marker = tmp_path / "pwned"
    for spec in [_shell_spec(marker), "builtins:eval",
                 {"class": "os:system", "params": {"command": f"id > {marker}"}}]:
        r = http.put("/v1/policy", json={"policies": [DEFAULT[0], spec]})
        assert r.status_code == 422, r.text
        assert "not allowed" in r.json()["error"]["message"]
        assert r.json()["error"]["details"]["errors"][0]["field"] == "policies[1]"
    after = http.get("/v1/policy").json()
    assert after["config"] == before["config"]  # unchanged
    assert after["snapshot"]["policies"] == before["snapshot"]["policies"]
    assert not marker.exists()


async def _write_config(stack: StackHandle, policies: list[Any]) -> int:
    """Into the policy bucket directly, as anything that can reach NATS could."""
    names = Names(stack.prefix)
    nc = await nats.connect(stack.nats_url)
    try:
        kv = await nc.jetstream().key_value(names.policy_bucket)
        return int(await kv.put(names.CONFIG_KEY, json.dumps({"policies": policies}).encode()))
    finally:
        await nc.close()


def _controller_log(stack: StackHandle, event: str, revision: int) -> list[dict[str, Any]]:
    """The global controller's log lines of `event` about config `revision`."""
    out = []
    for line in stack.log.read_text(errors="replace").splitlines():
        name, _, rest = line.partition("|")
        if name.strip() == "global-controller" and event in rest:
            entry = json.loads(rest)
            if entry.get("event") == event and entry.get("revision") == revision:
                out.append(entry)
    return out


def test_a_spec_in_the_bucket_is_refused_by_the_global_controller(
        stack: StackHandle, http: httpx.Client, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    before = _settled(http)["snapshot"]
    revision = asyncio.run(_write_config(stack, [DEFAULT[0], _shell_spec(marker)]))
    try:
        refused = wait_until_sync(lambda: _controller_log(stack, "policy.refused", revision),
                                  timeout=15, what=f"policy.refused for config revision "
                                  f"{revision} in the global controller's log")
        assert refused[0]["policy"] == "subprocess:run" and refused[0]["level"] == "error"
        assert refused[0]["kept"] == before["policies"]
        assert not marker.exists()
        assert http.get("/v1/policy").json()["snapshot"]["policies"] == before["policies"]
    finally:
        assert http.put("/v1/policy", json={"policies": DEFAULT}).status_code == 200


def test_operator_commands(stack) -> None:  # type: ignore[no-untyped-def]
    import json as _json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "nalar", "cluster", "--url", stack.url],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert set(_json.loads(out)["nodes"]) == {"n1", "n2"}
    out = subprocess.run([sys.executable, "-m", "nalar", "policy", "show", "--url", stack.url],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert _json.loads(out)["snapshot"]["policies"]
    bad = subprocess.run([sys.executable, "-m", "nalar", "policy", "set", "x:Y", "--url",
                          stack.url], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "cannot be used" in bad.stdout
