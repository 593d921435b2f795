"""Retry policy of an agent's calls: how many attempts, how long between them, and which
errors are worth another try.

    @nalar.agent(retry=nalar.Retry(attempts=5, backoff=0.5, on=("unavailable", "Timeout")))
    class Search: ...

A failed call whose error matches `on` (``"retryable"``: any error marked retryable, such as
`Unavailable` or an engine that is down; an error code such as ``"timeout"``; or the name of
the exception user code raised, such as ``"ConnectionError"``) runs again after
``backoff * multiplier**(attempt-1)`` seconds (at most `max_backoff`, spread by ±`jitter`),
until `attempts` calls have been made; any other error fails the future at once. The wait
happens in the local controller, which keeps the call claimed meanwhile; the retried call is
the same future with the next attempt number, so an idempotent tool finds its recorded result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nalar_common.errors import NalarError

RETRYABLE = "retryable"
"""In `on`: every error whose type says "try again later" (`RetryableError`)."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 3
    backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.2
    on: tuple[str, ...] = (RETRYABLE,)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("need backoff >= 0, max_backoff >= 0 and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if isinstance(self.on, str):
            object.__setattr__(self, "on", (self.on,))

    @classmethod
    def never(cls) -> Retry:
        """One attempt: every error fails the call at once."""
        return cls(attempts=1)

    def matches(self, error: NalarError) -> bool:
        """Whether `error` is one this policy retries: its code, or the type user code raised
        (an `AgentError` names it in `details["type"]`), or any retryable error."""
        if error.retryable and RETRYABLE in self.on:
            return True
        kinds = {error.error_code, type(error).__name__, str(error.details.get("type") or "")}
        return bool(kinds & set(self.on))

    def delay(self, attempt: int, error: NalarError) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when the call must fail now."""
        if attempt >= self.attempts or not self.matches(error):
            return None
        base = min(self.max_backoff, self.backoff * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


DEFAULT_RETRY = Retry()
