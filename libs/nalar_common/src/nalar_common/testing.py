"""pytest plugin: real nats-server (-js) and valkey-server on free ports, or the servers named by
`NALAR_TEST_NATS_URL` / `NALAR_TEST_REDIS_URL`; each test gets its own name prefix.

Services the tests start (and inherit this environment) let callers without credentials in
as `TEST_PRINCIPAL` (an admin), and the `nalar` command finds no API key, unless a test says
otherwise: the auth tests start their stacks with `NALAR_AUTH_ANONYMOUS` empty.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nalar_common.servers import ServerProcess, start_nats, start_valkey
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names

TEST_PRINCIPAL = json.dumps({"name": "test", "roles": ["admin"], "tenant": "default"})


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
