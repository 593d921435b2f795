"""An LLM engine that is down gives a typed, retryable error on the future: never a hang."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2e_stack import BASIC_APP, StackHandle, start_stack, stop_stack
from nalar_common.servers import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dead_engine_stack(nats_url: str, redis_url: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("dead-engine") / "nalar-up.log"
    handle = start_stack(BASIC_APP, nats_url, redis_url, log, nodes=1, extra_env={
        "NALAR_LLM_BACKEND": "openai", "NALAR_LLM_MODEL": "m",
        "NALAR_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "NALAR_LLM_TIMEOUT_S": "5"})
    yield handle
    stop_stack(handle)


def test_engine_down_is_a_retryable_typed_error(dead_engine_stack: StackHandle) -> None:
    with dead_engine_stack.client() as http:
        body = http.post("/v1/workflows/write/runs", params={"wait": 30},
                         json={"input": {"topic": "x"}}).json()
    assert body["status"] == "failed", body
    assert body["error"]["code"] == "engine_unavailable"
    assert "127.0.0.1" in body["error"]["message"]
    with httpx.Client(base_url=dead_engine_stack.url) as http:
        futures = http.get(f"/v1/runs/{body['run_id']}/futures").json()["futures"]
    call = next(f for f in futures if f["agent"] == "Writer")
    assert call["error"]["retryable"] is True
