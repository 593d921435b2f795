"""`wait_until` / `wait_until_sync`: poll until a predicate holds, or fail naming what was
awaited and the last value seen."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from nalar_common.testing import WaitTimeout, wait_until, wait_until_sync


def counter(ready_at: int) -> tuple[list[int], Callable[[], int]]:
    """A predicate that is falsy (returning 0) until its `ready_at`-th call."""
    calls: list[int] = []

    def poll() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= ready_at else 0

    return calls, poll


def test_sync_returns_the_first_truthy_value() -> None:
    calls, poll = counter(3)
    assert wait_until_sync(poll, what="the third poll", interval=0) == 3
    assert len(calls) == 3


async def test_async_polls_sync_and_async_predicates() -> None:
    _, poll = counter(2)
    assert await wait_until(poll, what="the second poll", interval=0) == 2
    seen: list[str] = []

    async def state() -> str | None:
        seen.append("x")
        return "done" if len(seen) == 4 else None

    assert await wait_until(state, what="state done", interval=0) == "done"


def test_timeout_names_what_and_the_last_value() -> None:
    with pytest.raises(WaitTimeout) as info:
        wait_until_sync(lambda: {"status": "running"}.get("done"), what="the run to finish",
                        timeout=0.05, interval=0.01)
    assert isinstance(info.value, AssertionError)
    assert info.value.what == "the run to finish" and info.value.last is None
    assert "the run to finish" in str(info.value) and "last seen: None" in str(info.value)


async def test_async_timeout_names_what_and_the_last_value() -> None:
    async def status() -> list[str]:
        return []

    with pytest.raises(WaitTimeout, match=r"waiting for the futures; last seen: \[\]"):
        await wait_until(status, what="the futures", timeout=0.05, interval=0.01)


def test_ignored_exceptions_count_as_not_yet_and_are_reported() -> None:
    calls, poll = counter(3)

    def flaky() -> int:
        if len(calls) < 2:
            poll()
            raise ConnectionError("not up")
        return poll()

    assert wait_until_sync(flaky, what="up", interval=0, ignore=(ConnectionError,)) == 3
    with pytest.raises(WaitTimeout) as info:
        wait_until_sync(lambda: 1 / 0, what="never", timeout=0.02, interval=0.01,
                        ignore=(ZeroDivisionError,))
    assert isinstance(info.value.last, ZeroDivisionError)


async def test_other_exceptions_end_the_wait_at_once() -> None:
    async def broken() -> bool:
        raise KeyError("status")

    with pytest.raises(KeyError):
        await wait_until(broken, what="status", timeout=30, ignore=(ConnectionError,))
    empty: dict[str, str] = {}
    with pytest.raises(KeyError):
        wait_until_sync(lambda: empty["status"], what="status", timeout=30)


async def test_async_ignores_exceptions_of_awaited_predicates() -> None:
    tries: list[int] = []

    async def up() -> bool:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("refused")
        return True

    assert await wait_until(up, what="up", interval=0, ignore=(ConnectionError,)) is True


async def test_until_judges_the_state_and_the_failure_shows_it() -> None:
    views = iter([{"status": "running"}, {"status": "waiting"}, {"status": "succeeded"}])
    done = wait_until_sync(lambda: next(views), what="the run to finish", interval=0,
                           until=lambda view: view["status"] == "succeeded")
    assert done == {"status": "succeeded"}

    async def view() -> dict[str, str]:
        return {"status": "running"}

    with pytest.raises(WaitTimeout, match=r"last seen: \{'status': 'running'\}"):
        await wait_until(view, what="the run to finish", timeout=0.05, interval=0.01,
                         until=lambda v: v["status"] == "succeeded")
