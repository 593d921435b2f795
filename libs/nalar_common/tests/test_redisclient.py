"""The Redis client every process builds (`redis_client`) against real valkey-servers: it waits
out a server that loads its data (`LOADING`) or runs a long script (`BUSY`), where a plain
`Redis.from_url` client fails at once; and `start_valkey` returns only once the data is loaded."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from nalar_common.redisclient import BudgetRetry, is_busy, redis_client
from nalar_common.servers import ServerProcess, free_port, start_valkey, valkey_server_binary
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

KEYS = 300_000  # an append-only file of ~20 MB: loading it takes a noticeable while


def test_busy_is_loading_or_a_long_script_and_nothing_else() -> None:
    assert is_busy(BusyLoadingError("Valkey is loading the dataset in memory"))
    assert is_busy(ResponseError("BUSY Valkey is busy running a script. You can only call "
                                 "SCRIPT KILL or SHUTDOWN NOSCRIPT."))
    assert not is_busy(ResponseError("BUSYGROUP Consumer Group name already exists"))
    assert not is_busy(ResponseError("BUSYKEY Target key name already exists."))
    assert not is_busy(RedisConnectionError("refused"))


def test_each_kind_of_error_has_its_budget() -> None:
    retry = BudgetRetry(busy_s=60, down_s=5)
    assert retry.budget_s(BusyLoadingError("loading")) == 60
    assert retry.budget_s(ResponseError("BUSY running a script")) == 60
    assert retry.budget_s(RedisConnectionError("refused")) == 5
    assert retry.budget_s(ResponseError("WRONGTYPE Operation against a key")) == 0


async def test_a_missing_script_and_a_wrong_type_are_not_retried(redis_url: str) -> None:
    r = redis_client(redis_url, busy_s=30, down_s=30)
    try:
        await r.set("redisclient:str", "x")
        started = time.monotonic()
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await r.lpush("redisclient:str", "y")
        script = r.register_script("return 41 + 1")  # EVALSHA, NOSCRIPT, SCRIPT LOAD, again
        await r.script_flush()
        assert await script() == 42
        assert time.monotonic() - started < 5
    finally:
        await r.aclose()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A valkey data folder (append-only file) holding `KEYS` keys."""
    data = tmp_path_factory.mktemp("filled")
    server = start_valkey(data)
    try:
        r = redis.Redis(port=server.port)
        pipe = r.pipeline(transaction=False)
        for i in range(KEYS):
            pipe.set(f"k{i}", b"v" * 40)
            if i % 20_000 == 19_999:
                pipe.execute()
        pipe.execute()
        assert r.dbsize() == KEYS
    finally:
        server.stop()  # SIGTERM: the append-only file is flushed
    yield data


def test_start_valkey_returns_once_the_data_is_loaded(filled: Path) -> None:
    server = start_valkey(filled)
    try:
        plain = redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0))  # LOADING raises
        assert plain.dbsize() == KEYS
    finally:
        server.stop()


def _valkey_loading(data: Path) -> tuple[subprocess.Popen[bytes], int]:
    """valkey-server on `data`, returned as soon as it accepts connections (still loading)."""
    port = free_port()
    proc = subprocess.Popen(
        [valkey_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)


async def test_commands_wait_while_the_server_loads(filled: Path) -> None:
    proc, port = _valkey_loading(filled)
    r = redis_client(f"redis://127.0.0.1:{port}/0")
    try:
        assert await r.get(f"k{KEYS - 1}") == b"v" * 40
        assert await r.dbsize() == KEYS
    finally:
        await r.aclose()
        proc.terminate()
        proc.wait()


async def test_commands_wait_while_a_script_runs(tmp_path: Path) -> None:
    server: ServerProcess = start_valkey(tmp_path, appendonly=False)
    plain = aioredis.Redis.from_url(server.url)  # what services used: no retries
    busy = aioredis.Redis.from_url(server.url)
    ours = redis_client(server.url)
    try:
        await plain.config_set("busy-reply-threshold", 100)  # BUSY after 0.1 s of script

        async def spin(ms: int) -> int:
            """A Lua script that keeps the server busy for `ms` milliseconds."""
            return int(await busy.eval(
                "local t = redis.call('TIME'); local stop = t[1] * 1e6 + t[2] + ARGV[1] * 1e3\n"
                "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= stop\nreturn 1",
                0, ms))

        async with asyncio.TaskGroup() as tg:
            script = tg.create_task(spin(1500))
            async with asyncio.timeout(10):
                while True:  # until the server answers BUSY: the case under test
                    try:
                        await plain.ping()
                    except ResponseError as exc:
                        assert is_busy(exc), exc
                        break
            assert await ours.incr("after-script") == 1  # waited, then ran once
            assert script.done() and script.result() == 1
    finally:
        for c in (plain, busy, ours):
            await c.aclose()
        server.stop()
