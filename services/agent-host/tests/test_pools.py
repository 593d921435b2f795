"""Sync drivers and sync agent methods run in separate thread pools, each as large as what may
run at once, so a driver blocked on `value()` never holds the thread its call needs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from nalar_agent_host.service import AgentHost
from nalar_agent_host.settings import AgentHostSettings
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names

BASIC_APP = Path(__file__).resolve().parents[3] / "tests" / "apps" / "basic"


def test_pools_are_separate_and_large_enough() -> None:
    bus = SimpleNamespace(settings=NatsSettings(), names=Names(), on_reconnect=lambda hook: None)
    host = AgentHost(bus, "n1", AgentHostSettings(app=str(BASIC_APP), threads=2,  # type: ignore[arg-type]
                                                  driver_concurrency=8))
    try:
        total = sum(spec.concurrency for spec in host.app.agents.values())
        assert host.pool._max_workers >= total > 2
        assert host.driver_pool._max_workers == 8
        assert host.pool is not host.driver_pool
    finally:
        host.pool.shutdown()
        host.driver_pool.shutdown()
