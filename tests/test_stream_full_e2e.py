"""A journal (NALAR_RUNS) nearly full, with a whole stack: new runs get 503 `unavailable`
naming the stream, and the run accepted before still finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from e2e_stack import BASIC_APP, Services, one_node
from nalar_common.subjects import Names

pytestmark = pytest.mark.e2e

LIMIT = 1 << 20


@pytest.fixture
def svc(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[Services]:
    with one_node(BASIC_APP, nats_url, redis_url, tmp_path,
                  extra_env={"NALAR_NATS_RUNS_MAX_BYTES": str(LIMIT)}) as handle:
        yield handle


async def fill_journal(nats_url: str, names: Names, ratio: float) -> None:
    """Other runs' journal up to `ratio` of the limit (1 KB events on a run of its own)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        while (await js.stream_info(names.runs_stream)).state.bytes < ratio * LIMIT:
            acks = [await js.publish_async(names.run_event("filler", "pad"), b"x" * 1024)
                    for _ in range(100)]
            await asyncio.gather(*acks)
    finally:
        await nc.close()


def status(svc: Services, run: str) -> str:
    return str(httpx.get(f"{svc.url}/v1/runs/{run}").json()["status"])


def test_full_journal_refuses_new_runs_and_finishes_accepted_ones(svc: Services) -> None:
    accepted = httpx.post(f"{svc.url}/v1/workflows/echo_then_nap/runs",
                          json={"input": {"seconds": 2.0}}).json()["run_id"]
    svc.wait_until(lambda: status(svc, accepted) == "running", what="the first run to start")
    names = Names(svc.prefix)
    asyncio.run(fill_journal(svc.nats_url, names, 0.92))

    refused: list[httpx.Response] = []
    admitted: list[str] = []  # in the second its gateway still had the old fill

    def refuses() -> bool:
        r = httpx.post(f"{svc.url}/v1/workflows/echo/runs", json={"input": {"value": 1}})
        if r.status_code == 202:
            admitted.append(r.json()["run_id"])  # a few at most: they have the room too
            return False
        refused.append(r)
        return True

    svc.wait_until(refuses, timeout=10, what="a 503 for a new run")
    r = refused[-1]
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "unavailable"
    assert err["details"]["stream"] == names.runs_stream
    assert err["details"]["max_bytes"] == LIMIT and err["details"]["fill"] >= 0.9

    for run in [accepted, *admitted]:
        svc.wait_until(lambda: status(svc, run) in ("succeeded", "failed"),  # noqa: B023
                       timeout=30, what=f"run {run} to finish")
        assert status(svc, run) == "succeeded", httpx.get(f"{svc.url}/v1/runs/{run}").text
