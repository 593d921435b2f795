"""The fault suite's tool: a side effect (a Redis counter) that must happen once per step of a
run, however often the call is retried, re-dispatched or re-run.

Keys (not under the stack's name prefix; run ids are unique):
- `faults:exec:{run}:{step}`: INCR at the start of every execution of the body (how often it
  actually ran), with `faults:execlog:{run}:{step}` (time, attempt and host of each);
- `faults:{run}:{step}`: the side effect, INCR at the end of the body; the harness checks it
  is exactly 1;
- `faults:ops:{run}:{step}`: the `nalar.idempotency_key()` and attempt of every execution that
  applied the side effect (to tell, when a counter is 2, which attempts did it).
"""

from __future__ import annotations

import os
import random
import threading
import time

import nalar
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            # no retries inside the client: a command whose reply was lost may have been
            # applied, and sending it again would be a second side effect; the call's retry
            # policy (and the idempotency ledger) decide what runs again
            _client = redis.Redis.from_url(os.environ["NALAR_REDIS_URL"], socket_timeout=5,
                                           socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
        return _client


# Errors of the Redis client (the tool's own, and the idempotency ledger's) while Redis
# restarts are worth another attempt; so is everything Nalar marks retryable.
RETRY = nalar.Retry(attempts=8, backoff=0.3, max_backoff=3.0,
                    on=("retryable", "ConnectionError", "TimeoutError", "BusyLoadingError"))


@nalar.agent(concurrency=8, retry=RETRY)
class Counter:
    @nalar.tool(idempotent=False)
    def square(self, step: int, after: int | None = None) -> int:
        """Step `step` of the pipeline (`after`: the previous step's result, only to chain the
        calls through futures); returns step*step."""
        run = nalar.current_run_id()
        r = _redis()
        pipe = r.pipeline(transaction=True)
        pipe.incr(f"faults:exec:{run}:{step}")
        pipe.rpush(f"faults:execlog:{run}:{step}", f"{time.time():.3f}|a{nalar.current_attempt()}"
                   f"|{os.environ.get('NALAR_AGENT_HOST_HOST_ID', '?')}")
        pipe.execute()
        time.sleep(random.uniform(0.2, 0.4))  # in flight when a fault strikes
        pipe = r.pipeline(transaction=True)
        pipe.incr(f"faults:{run}:{step}")
        pipe.rpush(f"faults:ops:{run}:{step}",
                   f"{nalar.idempotency_key()}@a{nalar.current_attempt()}")
        pipe.execute()
        return step * step
