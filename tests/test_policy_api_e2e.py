"""The operator surface: the cluster as the gateway sees it, the running policy snapshot, and
switching policies at run time (a bad one is refused and the running snapshot stays)."""

from __future__ import annotations

import time

import httpx
import pytest

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
        deadline = time.monotonic() + 15
        while True:
            snap = http.get("/v1/policy").json()["snapshot"]
            if snap["policies"] == ["LeastLoadedRouting", "ProtectSession", "SessionPriority"]:
                break
            assert time.monotonic() < deadline, snap
            time.sleep(0.1)
        assert snap["priorities"] == {"vip": 10, "gold": 7}
        history = http.get("/v1/policy", params={"history": True}).json()["history"]
        assert len(history) >= 2
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
