"""A dev stack that keeps running: `nalar up` started again on a data folder whose Valkey takes
a while to load comes up and serves runs (it waits for the load instead of failing on
`LOADING`), and an agent host killed under it is started again while the stack stays up."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from e2e_stack import BASIC_APP, StackHandle, start_stack, stop_stack
from nalar_common.testing import WaitTimeout, wait_until_sync

pytestmark = pytest.mark.e2e

KEYS = 300_000  # ~20 MB of append-only file: Valkey answers LOADING for a noticeable while
OWN_SERVERS = {"NALAR_NATS_URL": "", "NALAR_REDIS_URL": ""}  # `nalar up` starts its own


def _wait_for(what: str, check: Callable[[], object], stack: StackHandle,
              timeout: float = 60) -> object:
    """Poll `check` until it returns something truthy; fail early if `nalar up` exits."""
    def alive_and_found() -> object:
        assert stack.proc.poll() is None, \
            f"nalar up exited:\n{stack.log.read_text(errors='replace')[-4000:]}"
        return check()

    try:
        return wait_until_sync(alive_and_found, what=what, timeout=timeout, interval=0.1)
    except WaitTimeout as exc:
        raise WaitTimeout(f"{what}\n{stack.log.read_text(errors='replace')[-4000:]}",
                          exc.timeout, exc.last) from None


def _log_match(stack: StackHandle, pattern: str) -> list[re.Match[str]]:
    return list(re.finditer(pattern, stack.log.read_text(errors="replace")))


def _echo(stack: StackHandle, value: str) -> None:
    """A run with an agent call in it completes."""
    with stack.client() as http:
        r = http.post("/v1/workflows/echo/runs", params={"wait": 60},
                      json={"input": {"value": value}})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    assert r.json()["result"] == value


def test_up_again_on_a_data_folder_that_takes_a_while_to_load(tmp_path: Path) -> None:
    first = start_stack(BASIC_APP, "", "", tmp_path / "up1.log", nodes=1,
                        extra_env=OWN_SERVERS)
    try:
        match = _wait_for("the banner", lambda: _log_match(first, r"redis\s+(redis://\S+)"),
                          first)
        assert isinstance(match, list)
        redis_url = match[0].group(1)
        r = redis.Redis.from_url(redis_url)
        pipe = r.pipeline(transaction=False)
        for i in range(KEYS):
            pipe.set(f"filler:{i}", b"x" * 40)
            if i % 20_000 == 19_999:
                pipe.execute()
        pipe.execute()
        _echo(first, "first")
    finally:
        stop_stack(first)
    assert first.proc.returncode == 0, first.log.read_text()[-4000:]
    assert list((tmp_path / "data" / "valkey").glob("appendonly*")), "AOF is on"

    # same data folder (start_stack puts it beside the log); Valkey loads KEYS keys first
    second = start_stack(BASIC_APP, "", "", tmp_path / "up2.log", nodes=1,
                         extra_env=OWN_SERVERS)
    try:
        _wait_for("the banner", lambda: "Nalar is up" in second.log.read_text(), second)
        text = second.log.read_text(errors="replace")
        assert "BusyLoadingError" not in text and "LOADING" not in text
        redis_url = re.findall(r"redis\s+(redis://\S+)", text)[0]
        assert redis.Redis.from_url(redis_url).dbsize() >= KEYS
        _echo(second, "second")
    finally:
        stop_stack(second)
    assert second.proc.returncode == 0, second.log.read_text()[-4000:]


def test_an_agent_host_killed_under_nalar_up_is_started_again(
        nats_url: str, redis_url: str, tmp_path: Path) -> None:
    stack = start_stack(BASIC_APP, nats_url, redis_url, tmp_path / "up.log", nodes=1)
    try:
        _echo(stack, "before")
        started = r"nalar up: started host-n1-1 \(pid (\d+)\)"
        pid = int(_log_match(stack, started)[0].group(1))
        os.kill(pid, signal.SIGKILL)
        _wait_for("the restart", lambda: len(_log_match(stack, started)) == 2, stack)
        new_pid = int(_log_match(stack, started)[1].group(1))
        assert new_pid != pid
        assert ("nalar up: host-n1-1 exited with code -9; restarting in 1.0s (restart 1)"
                in stack.log.read_text())
        _wait_for("the new host's driver", lambda: _ready(stack), stack)
        for i in range(3):
            _echo(stack, f"after-{i}")
        assert stack.proc.poll() is None  # the stack never stopped
        os.kill(new_pid, 0)  # and the new host still runs
    finally:
        stop_stack(stack)
    assert stack.proc.returncode == 0, stack.log.read_text()[-4000:]


def _ready(stack: StackHandle) -> bool:
    try:
        r = httpx.get(f"{stack.url}/readyz", timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200
