"""Fault-injection points for the end-to-end tests: a gateway started with one of these
variables set to `1` kills itself with SIGKILL at that point, so a test can crash it exactly
where a real crash would hurt most. Never set them in a deployment.

`NALAR_GATEWAY_TEST_CRASH_AFTER_CREATED`: after a run's `created` event is journalled, before
its driver call is published (tests/test_run_start_recovery_e2e.py).
"""

from __future__ import annotations

import os
import signal

CRASH_AFTER_CREATED = "NALAR_GATEWAY_TEST_CRASH_AFTER_CREATED"


def crash_point(name: str) -> None:
    """Die here, as `kill -9` would, if the variable `name` is `1`."""
    if os.environ.get(name) == "1":
        os.kill(os.getpid(), signal.SIGKILL)
