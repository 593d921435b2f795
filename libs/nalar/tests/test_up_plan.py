"""`nalar up` wiring for provisioning: which agents each host starts with, its slots and
engine start-up time, the host processes a node may start, and the controller's policies."""

from __future__ import annotations

from pathlib import Path

from nalar.cli.up import Stack, UpOptions


def test_provisioning_options_reach_the_processes(tmp_path: Path) -> None:
    stack = Stack(UpOptions(app=tmp_path, nodes=2, hosts_per_node=3,
                            host_agents=["Chat", "Code,Search"], host_slots=1,
                            engine_startup_s=2.5, spawn_hosts=2,
                            policies="nalar_global_controller.policies:Rebalancer"))
    stack.nats_url, stack.redis_url = "nats://x", "redis://x"
    kids = {k.name: k.env for k in stack.plan()}
    assert kids["host-n1-1"]["NALAR_AGENT_HOST_AGENTS"] == "Chat"
    assert kids["host-n1-2"]["NALAR_AGENT_HOST_AGENTS"] == "Code,Search"
    assert kids["host-n2-3"]["NALAR_AGENT_HOST_AGENTS"] == "Chat"  # in turn
    assert kids["host-n2-1"]["NALAR_AGENT_HOST_SLOTS"] == "1"
    assert kids["host-n2-1"]["NALAR_AGENT_HOST_ENGINE_STARTUP_S"] == "2.5"
    lc = kids["lc-n1"]
    assert lc["NALAR_LC_SPAWN_HOSTS"] == "2" and lc["NALAR_AGENT_HOST_APP"] == str(tmp_path)
    assert kids["global-controller"]["NALAR_GC_POLICIES"].endswith(":Rebalancer")


def test_defaults_leave_hosts_generic(tmp_path: Path) -> None:
    stack = Stack(UpOptions(app=tmp_path))
    stack.nats_url, stack.redis_url = "nats://x", "redis://x"
    kids = {k.name: k.env for k in stack.plan()}
    assert "NALAR_AGENT_HOST_AGENTS" not in kids["host-n1-1"]
    assert kids["lc-n2"]["NALAR_LC_SPAWN_HOSTS"] == "0"
