"""The loop a service runs on: uvloop by default, asyncio's on request, a bad name refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from nalar_common import eventloop
from nalar_common.configfile import ConfigError


async def loop_kind() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NALAR_EVENT_LOOP", raising=False)
    assert eventloop.run(loop_kind()) == "uvloop"


def test_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NALAR_EVENT_LOOP", " AsyncIO ")
    assert eventloop.run(loop_kind()) == "asyncio"


def test_an_unknown_loop_is_refused_and_nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NALAR_EVENT_LOOP", "trio")
    ran = []

    async def body() -> None:
        ran.append(True)

    with pytest.raises(ConfigError, match=r"NALAR_EVENT_LOOP='trio'.*uvloop, asyncio"):
        eventloop.run(body())
    assert ran == []


def test_a_service_refuses_to_start_on_an_unknown_loop() -> None:
    """One line naming the setting and exit 2, before it connects to anything."""
    env = {"NALAR_EVENT_LOOP": "tokio", "NALAR_NATS_URL": "nats://127.0.0.1:1",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "nalar_global_controller"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to start: NALAR_EVENT_LOOP='tokio'" in proc.stderr
    assert "Traceback" not in proc.stderr
