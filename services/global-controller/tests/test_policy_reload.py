"""Policies from the KV bucket (`PUT /v1/policy`, or anything else that can write there) are
held to the allow-list: a refused one is logged by name, never imported or called, and the
policies in force stay (a real nats-server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nalar_common.bus import Bus
from nalar_common.settings import PolicyClassSettings
from nalar_global_controller.policies import PolicyAllowList
from nalar_global_controller.service import GlobalController
from nalar_global_controller.settings import GlobalControllerSettings
from structlog.testing import capture_logs

P = "nalar_global_controller.policies"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


async def _put_config(bus: Bus, policies: list[Any]) -> Any:
    kv = await bus.kv(bus.names.policy_bucket, history=10)
    await kv.put(bus.names.CONFIG_KEY, json.dumps({"policies": policies}).encode())
    return kv


async def test_a_refused_spec_in_the_bucket_is_logged_and_the_policies_stay(
        bus: Bus, tmp_path: Path) -> None:
    gc = GlobalController(bus, GlobalControllerSettings(policies=f"{P}:LeastLoadedRouting"))
    before = list(gc.policies)
    pwned = tmp_path / "pwned"
    kv = await _put_config(bus, [f"{P}:SessionAffinity", {
        "class": "subprocess:run", "params": {"args": ["touch", str(pwned)]}}])
    with capture_logs() as logs:
        await gc._reload(kv)
    refused = [e for e in logs if e["event"] == "policy.refused"]
    assert refused and refused[0]["policy"] == "subprocess:run", logs
    assert refused[0]["log_level"] == "error" and refused[0]["kept"] == ["LeastLoadedRouting"]
    assert gc.policies == before and not pwned.exists()

    with capture_logs() as logs:  # the same revision is not tried again
        await gc._reload(kv)
    assert not logs

    await _put_config(bus, [f"{P}:SessionAffinity"])  # a good one is taken
    await gc._reload(kv)
    assert gc.policy_names == ["SessionAffinity"]


async def test_a_user_policy_in_the_bucket_needs_registering(
        bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = [f"{P}:LeastLoadedRouting", "protect_session:ProtectSession"]
    plain = GlobalController(bus, GlobalControllerSettings())
    kv = await _put_config(bus, spec)
    with capture_logs() as logs:
        await plain._reload(kv)
    assert [e["policy"] for e in logs if e["event"] == "policy.refused"] == [
        "protect_session:ProtectSession"]

    allowed = PolicyAllowList.load(PolicyClassSettings(allow="protect_session:ProtectSession"))
    registered = GlobalController(bus, GlobalControllerSettings(), allowed=allowed)
    await registered._reload(kv)
    assert registered.policy_names == ["LeastLoadedRouting", "ProtectSession"]
