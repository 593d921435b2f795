"""The one way a Nalar process builds its Redis client: a command waits out a server that is
loading its data (`LOADING`) or running a long script (`BUSY`), and a short outage, instead of
failing at once (a client from plain `Redis.from_url` does not retry at all)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff, ExponentialBackoff
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["BUSY_WAIT_S", "DOWN_WAIT_S", "BudgetRetry", "is_busy", "redis_client"]

T = TypeVar("T")

BUSY_WAIT_S = 60.0  # LOADING / BUSY: the server is there and will answer once it is done
DOWN_WAIT_S = 5.0  # refused, reset, timed out: a restart, or a server that is gone


def is_busy(error: BaseException) -> bool:
    """`LOADING` (redis-py's `BusyLoadingError`), or `BUSY`: a script or function has run past
    `busy-reply-threshold`. redis-py has no class for `BUSY`, it is a plain `ResponseError`,
    so its code is read from the message (which must not match `BUSYGROUP` or `BUSYKEY`)."""
    if isinstance(error, BusyLoadingError):
        return True
    return isinstance(error, ResponseError) and str(error).split(" ", 1)[0] == "BUSY"


class BudgetRetry(Retry):
    """redis-py's `Retry` (exponential backoff, capped), limited by time per kind of error
    instead of by a count: a busy server gets `busy_s`, an unreachable one `down_s`, any
    other error (a wrong type, a missing script) is raised at once, as without retries."""

    def __init__(self, busy_s: float = BUSY_WAIT_S, down_s: float = DOWN_WAIT_S,
                 backoff: AbstractBackoff | None = None) -> None:
        super().__init__(backoff or ExponentialBackoff(cap=1.0, base=0.05), -1,
                         (RedisConnectionError, RedisTimeoutError, ResponseError))
        self.busy_s, self.down_s = busy_s, down_s

    def budget_s(self, error: BaseException) -> float:
        """How long, from a command's first try, `error` may be retried."""
        if is_busy(error):
            return self.busy_s
        if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
            return self.down_s
        return 0.0

    async def call_with_retry(self, do: Callable[[], Awaitable[T]],
                              fail: Callable[..., Any],
                              is_retryable: Callable[[Exception], bool] | None = None,
                              with_failure_count: bool = False) -> T:
        start = time.monotonic()

        def retryable(error: Exception) -> bool:
            if is_retryable is not None and not is_retryable(error):
                return False
            return time.monotonic() - start < self.budget_s(error)

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


def redis_client(url: str, *, busy_s: float = BUSY_WAIT_S,
                 down_s: float = DOWN_WAIT_S) -> aioredis.Redis:
    """A client for `url` whose every command (and connect) retries as `BudgetRetry` says."""
    return aioredis.Redis.from_url(url, retry=BudgetRetry(busy_s, down_s))
