"""pytest plugin: real nats-server (-js) and valkey-server on free ports, or the servers named by
`NALAR_TEST_NATS_URL` / `NALAR_TEST_REDIS_URL`; each test gets its own name prefix.

Services the tests start (and inherit this environment) let callers without credentials in
as `TEST_PRINCIPAL` (an admin), and the `nalar` command finds no API key, unless a test says
otherwise: the auth tests start their stacks with `NALAR_AUTH_ANONYMOUS` empty.

Tests wait on state, never on time: `wait_until` (and `wait_until_sync` for sync tests) polls
what the test can observe until it holds, and names what it waited for when it never does.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nalar_common.servers import ServerProcess, start_nats, start_valkey
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names

TEST_PRINCIPAL = json.dumps({"name": "test", "roles": ["admin"], "tenant": "default"})


class WaitTimeout(AssertionError):
    """A wait that ran out of time; carries what was awaited and the last value the
    predicate returned (or the last exception it raised, when that kind was ignored)."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        self.what, self.timeout, self.last = what, timeout, last
        shown = repr(last)
        if len(shown) > 2000:
            shown = shown[:2000] + "..."
        super().__init__(f"timed out after {timeout:g} s waiting for {what}; last seen: {shown}")


def _poll(predicate: Callable[[], Any], ignore: tuple[type[BaseException], ...]
          ) -> tuple[bool, Any]:
    try:
        return False, predicate()
    except ignore as exc:
        return True, exc


async def wait_until(predicate: Callable[[], Any | Awaitable[Any]], *, what: str,
                     until: Callable[[Any], object] = bool, timeout: float = 30.0,
                     interval: float = 0.05,
                     ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll `predicate` (sync or async) until what it returns is truthy (or passes `until`:
    then `predicate` may return the whole state, e.g. a run's view, and the failure shows
    it), and return that. An exception of a kind in `ignore` counts as "not yet"; any other
    ends the wait. After `timeout` s, `WaitTimeout` names `what` and the last value seen.
    The timeout is only an upper bound: make it generous."""
    deadline = time.monotonic() + timeout
    while True:
        raised, value = _poll(predicate, ignore)
        if not raised and inspect.isawaitable(value):
            try:
                value = await value
            except ignore as exc:
                raised, value = True, exc
        if not raised and until(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(what, timeout, value)
        await asyncio.sleep(min(interval, left))


def wait_until_sync(predicate: Callable[[], Any], *, what: str,
                    until: Callable[[Any], object] = bool, timeout: float = 30.0,
                    interval: float = 0.05,
                    ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """`wait_until` for sync tests (and a sync `predicate`): blocks the thread while it
    waits."""
    deadline = time.monotonic() + timeout
    while True:
        raised, value = _poll(predicate, ignore)
        if not raised and until(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(what, timeout, value)
        time.sleep(min(interval, left))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("NALAR_AUTH_ANONYMOUS", TEST_PRINCIPAL)
    os.environ.setdefault("NALAR_API_KEY_FILE", os.devnull)  # not the developer's key


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess | None]:
    if os.environ.get("NALAR_TEST_NATS_URL"):
        yield None
        return
    server = start_nats(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: ServerProcess | None) -> str:
    return os.environ.get("NALAR_TEST_NATS_URL") or (nats_server.url if nats_server else "")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess | None]:
    if os.environ.get("NALAR_TEST_REDIS_URL"):
        yield None
        return
    server = start_valkey(tmp_path_factory.mktemp("valkey"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: ServerProcess | None) -> str:
    return os.environ.get("NALAR_TEST_REDIS_URL") or (redis_server.url if redis_server else "")


@pytest.fixture
def names() -> Names:
    """A random prefix so tests never see each other's subjects, streams or keys."""
    return Names(prefix="t" + uuid.uuid4().hex[:10])


@pytest.fixture
def nats_settings(nats_url: str, names: Names) -> NatsSettings:
    return NatsSettings(url=nats_url, prefix=names.prefix)


@pytest.fixture
async def bus(nats_settings: NatsSettings, names: Names) -> AsyncIterator[object]:
    from nalar_common.bus import connect

    b = await connect(nats_settings, names, name="pytest")
    await b.ensure_topology()
    yield b
    await b.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
