"""`nalar up`'s restart rule: a backoff that doubles up to its cap and starts over after a child
stayed up a while, and the crash loop (more than 5 restarts within 60 s) that stops the stack;
then the supervisor itself on small real processes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from nalar.cli.supervisor import Child, RestartPolicy, Restarts, Supervisor


def _run(restarts: Restarts, start: float, up_s: float) -> tuple[float, float | None]:
    """The child starts at `start`, exits `up_s` later: (exit time, delay asked for)."""
    restarts.started(start)
    return start + up_s, restarts.next_delay(start + up_s)


def test_backoff_doubles_up_to_its_cap() -> None:
    r = Restarts()
    now, delays = 0.0, []
    for _ in range(8):  # up 29 s each time: never long enough to count as stable
        now, delay = _run(r, now, 29.0)
        assert delay is not None
        delays.append(delay)
        now += delay
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert r.count == 8


def test_backoff_starts_over_after_a_stable_run() -> None:
    r = Restarts()
    now = 0.0
    for expected in (1, 2, 4):
        now, delay = _run(r, now, 1.0)
        assert delay == expected
        now += delay
    now, delay = _run(r, now, 30.0)  # stayed up `stable_after_s`
    assert delay == 1


def test_sixth_quick_exit_within_the_window_is_a_crash_loop() -> None:
    r = Restarts()
    now = 0.0
    for expected in (1, 2, 4, 8, 16):  # five restarts, all within 60 s
        now, delay = _run(r, now, 0.5)
        assert delay == expected
        now += delay
    assert now - 0.5 < 60
    _, delay = _run(r, now, 0.5)
    assert delay is None
    assert r.count == 5


def test_restarts_older_than_the_window_do_not_count() -> None:
    policy = RestartPolicy(first_delay_s=1, max_delay_s=1, max_restarts=2, window_s=10)
    r = Restarts(policy)
    assert _run(r, 0.0, 1.0)[1] == 1  # restarts at 1 and 3
    assert _run(r, 2.0, 1.0)[1] == 1
    assert _run(r, 4.0, 1.0)[1] is None  # a third exit within 10 s
    r2 = Restarts(policy)
    assert _run(r2, 0.0, 1.0)[1] == 1
    assert _run(r2, 2.0, 1.0)[1] == 1
    assert _run(r2, 12.0, 1.0)[1] == 1  # the first restart (at 1) has left the window


# -- the supervisor on real processes --------------------------------------------------------

_FLAKY = """
import os, sys, time
marker = os.environ["MARKER"]
if not os.path.exists(marker):
    open(marker, "w").close()
    print("crashing", flush=True)
    sys.exit(3)
print("up", flush=True)
while True:  # until signalled
    time.sleep(3600)
"""


@pytest.fixture
def modules(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "flaky_child.py").write_text(_FLAKY)
    (tmp_path / "crashing_child.py").write_text("import sys\nsys.exit(7)\n")
    (tmp_path / "refusing_child.py").write_text("import sys\nsys.exit(2)\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path), "MARKER": str(tmp_path / "crashed")}


class _Lines:
    """`say` for a supervisor: keeps the lines; `wait_for` returns once one contains `text`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def say(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def wait_for(self, text: str) -> str:
        async with asyncio.timeout(30):
            while True:
                found = [line for line in self.lines if text in line]
                if found:
                    return found[-1]
                self._changed.clear()
                await self._changed.wait()


async def test_a_child_that_exits_is_started_again(modules: dict[str, str]) -> None:
    out, reasons = _Lines(), list[str]()
    child = Child("flaky", "flaky_child", modules)
    sup = Supervisor([child], out.say, reasons.append, RestartPolicy(first_delay_s=0.1))
    assert await sup.start(child)
    async with asyncio.TaskGroup() as tg:
        watch = tg.create_task(sup.watch(child))
        await out.wait_for("flaky | up")
        assert "nalar up: flaky exited with code 3; restarting in 0.1s (restart 1)" in out.lines
        assert sum("nalar up: started flaky (pid" in line for line in out.lines) == 2
        await sup.stop()
        assert child.proc is not None and child.proc.returncode is None
        child.proc.terminate()
    assert watch.done() and reasons == []
    assert not await sup.start(child)  # stopped: nothing starts any more


async def test_a_crash_loop_gives_up_with_the_reason(modules: dict[str, str]) -> None:
    out, reasons = _Lines(), list[str]()
    child = Child("crashing", "crashing_child", modules)
    policy = RestartPolicy(first_delay_s=0.01, max_delay_s=0.02, max_restarts=2)
    sup = Supervisor([child], out.say, reasons.append, policy)
    assert await sup.start(child)
    await sup.watch(child)  # returns when it gives up
    assert reasons == ["crashing keeps crashing: it exited with code 7 after 2 restarts "
                       "within 60s"]
    assert [line for line in out.lines if "restarting" in line] == [
        "nalar up: crashing exited with code 7; restarting in 0.0s (restart 1)",
        "nalar up: crashing exited with code 7; restarting in 0.0s (restart 2)"]


async def test_a_child_that_refuses_its_configuration_is_not_restarted(
        modules: dict[str, str]) -> None:
    out, reasons = _Lines(), list[str]()
    child = Child("refusing", "refusing_child", modules)
    sup = Supervisor([child], out.say, reasons.append)
    assert await sup.start(child)
    await sup.watch(child)
    assert reasons == ["refusing refused to start (exit code 2; its log above says why)"]
    assert not [line for line in out.lines if "restarting" in line]
