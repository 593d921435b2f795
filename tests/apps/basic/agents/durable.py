"""Agents for retries, the idempotency ledger and deadlines."""

from __future__ import annotations

import os
import threading

import nalar

_local: dict[str, int] = {}
_lock = threading.Lock()


def bump(key: str) -> int:
    """An external counter (Redis on a stack, memory in local mode): the side effect whose
    repetition the ledger must prevent."""
    url = os.environ.get("NALAR_REDIS_URL")
    if url:
        import redis

        return int(redis.Redis.from_url(url).incr(f"test:counter:{key}"))
    with _lock:
        _local[key] = _local.get(key, 0) + 1
        return _local[key]


def read(key: str) -> int:
    url = os.environ.get("NALAR_REDIS_URL")
    if url:
        import redis

        return int(redis.Redis.from_url(url).get(f"test:counter:{key}") or 0)
    return _local.get(key, 0)


@nalar.agent(concurrency=8, retry=nalar.Retry(attempts=4, backoff=0.05, jitter=0))
class Flaky:
    def until(self, succeed_on: int, error: str = "unavailable") -> dict[str, object]:
        """Fails on attempts before `succeed_on` with the named error."""
        attempt = nalar.current_attempt()
        if attempt < succeed_on:
            if error == "unavailable":
                raise nalar.Unavailable(f"attempt {attempt}: try later")
            if error == "connection":
                raise ConnectionError(f"attempt {attempt}: connection reset")
            raise ValueError(f"attempt {attempt}: bad value")
        return {"attempt": attempt}

    @nalar.method(retry=nalar.Retry(attempts=3, backoff=0.05, jitter=0,
                                    on=("ConnectionError",)))
    def on_connection(self, succeed_on: int, error: str = "connection") -> dict[str, object]:
        return self.until(succeed_on, error)

    @nalar.method(retry=nalar.Retry.never())
    def never(self) -> None:
        raise nalar.Unavailable("down, and this method does not retry")

    def charge_then_fail(self, key: str, succeed_on: int) -> dict[str, object]:
        """Charges once (a `once` block), then fails until `succeed_on`: the retries must
        find the charge recorded, not charge again."""
        with nalar.once("charge") as op:
            if not op.done:
                op.result = bump(key)
        attempt = nalar.current_attempt()
        if attempt < succeed_on:
            raise nalar.Unavailable(f"attempt {attempt} failed after charging")
        return {"charged": op.result, "counter": read(key), "attempt": attempt,
                "key": op.key, "tries": op.tries}


@nalar.agent(concurrency=8)
class Payments:
    @nalar.tool(idempotent=False)
    def pay(self, key: str) -> dict[str, object]:
        return {"counter": bump(key), "idempotency_key": nalar.idempotency_key()}


@nalar.agent
class Poison:
    def crash(self, flag: str) -> str:
        """Kills the host that runs it until `flag` is set (a bug fixed later)."""
        if not read(flag):
            os._exit(17)
        return "survived"
