"""Cross-service fixtures: the whole stack as real processes (`nalar up`) on test servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2e_stack import BASIC_APP, StackHandle, start_stack, stop_stack


@pytest.fixture(scope="session")
def stack(nats_url: str, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("stack") / "nalar-up.log"
    # examples/policies on the path: a user policy can be switched on at run time
    handle = start_stack(BASIC_APP, nats_url, redis_url, log, extra_env={
        "PYTHONPATH": str(BASIC_APP.parents[2] / "examples" / "policies"),
        "NALAR_POLICIES_ALLOW": "protect_session:ProtectSession"})
    yield handle
    stop_stack(handle)


@pytest.fixture
def http(stack: StackHandle) -> Iterator[httpx.Client]:
    with stack.client() as c:
        yield c
