"""The example app served by the whole stack: the analyst fans out to four specialists and the
summarizer joins their futures (passed nested in a dict)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_stack import ROOT, StackHandle, start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def example(nats_url: str, redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("example") / "nalar-up.log"
    handle = start_stack(ROOT / "examples" / "financial_analyst", nats_url, redis_url, log,
                         args=("--llm-time-scale", "0.05"))
    yield handle
    stop_stack(handle)


def test_financial_analysis_fans_out_and_joins(example: StackHandle) -> None:
    with example.client() as http:
        r = http.post("/v1/workflows/financial_analysis/runs", params={"wait": 60},
                      json={"input": {"ticker": "NVDA", "question": "Buy?"}})
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "succeeded"
        assert run["result"]["ticker"] == "NVDA"
        assert run["result"]["summary"].startswith("Buy? -> ")
        assert run["result"]["headlines"]
        futures = {f["future"]: f for f in
                   http.get(f"/v1/runs/{run['run_id']}/futures").json()["futures"]}
    assert futures["1"]["agent"] == "AnalystAgent"
    specialists = {futures[f]["agent"] for f in ("1_1", "1_2", "1_3", "1_4")}
    assert specialists == {"StockAgent", "BondAgent", "MarketResearchAgent", "NewsAgent"}
    assert futures["1_5"]["agent"] == "SummarizerAgent"
    assert sorted(futures["1_5"]["deps"]) == ["1_1", "1_2", "1_3", "1_4"]
    assert all(f["parent"] == "1" for k, f in futures.items() if k.startswith("1_"))
    # the four specialists ran in parallel: each started before any of the others finished
    starts = [futures[f]["timings"]["started"] for f in ("1_1", "1_2", "1_3", "1_4")]
    ends = [futures[f]["timings"]["finished"] for f in ("1_1", "1_2", "1_3", "1_4")]
    assert max(starts) < min(ends)
    assert futures["1_5"]["timings"]["started"] >= max(ends)


def test_async_compare_workflow(example: StackHandle) -> None:
    with example.client() as http:
        run = http.post("/v1/workflows/compare/runs", params={"wait": 60},
                        json={"input": {"tickers": ["AAPL", "MSFT", "AMZN"]}}).json()
    assert run["status"] == "succeeded", run
    assert set(run["result"]) == {"AAPL", "MSFT", "AMZN"}


async def test_local_mode_gives_the_same_result_as_the_stack(example: StackHandle) -> None:
    from nalar.local import run_local

    input = {"ticker": "TSLA", "question": "Hold?"}
    with example.client() as http:
        on_stack = http.post("/v1/workflows/financial_analysis/runs", params={"wait": 60},
                             json={"input": input}).json()
    assert on_stack["status"] == "succeeded"
    local = await run_local(str(ROOT / "examples" / "financial_analyst"), "financial_analysis",
                            input, time_scale=0.05)
    assert local == on_stack["result"]
