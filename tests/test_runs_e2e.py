"""End to end through HTTP against real servers and real service processes."""

from __future__ import annotations

import json

import httpx
import pytest
from e2e_stack import StackHandle
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e


def run(http: httpx.Client, workflow: str, input: dict[str, object], wait: float = 30,
        **extra: object) -> httpx.Response:
    return http.post(f"/v1/workflows/{workflow}/runs", params={"wait": wait},
                     json={"input": input, **extra})


@pytest.mark.parametrize("value", ["", None, 0, "0123456789abcdef0123456789abcdef", False,
                                   [], {}, {"nested": [1, "", None]}, 1.5, "unicode ✓"])
def test_values_round_trip_unchanged(http: httpx.Client, value: object) -> None:
    r = run(http, "echo", {"value": value})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["result"] == value
    assert type(body["result"]) is type(value)


def test_async_driver_and_async_method(http: httpx.Client) -> None:
    r = run(http, "aecho", {"value": "0123456789abcdef0123456789abcdef"})
    assert r.json()["result"] == "0123456789abcdef0123456789abcdef"


def test_nested_future_dependencies(http: httpx.Client) -> None:
    r = run(http, "chain", {"a": 2, "b": 3})
    body = r.json()
    assert body["status"] == "succeeded", body
    # s1 = 5, s2 = 6, total([5, 6, 10], {x: 5, y: 5}) = 31
    assert body["result"] == 31
    futures = {f["future"]: f for f in http.get(f"/v1/runs/{body['run_id']}/futures")
               .json()["futures"]}
    assert futures["2"]["deps"] == ["1"]
    assert sorted(futures["3"]["deps"]) == ["1", "2"]
    assert futures["0"]["agent"] == "_driver"
    assert all(f["status"] == "succeeded" for f in futures.values())
    assert futures["3"]["executor"].endswith(".Echo")
    assert {"created", "dispatched", "started", "finished"} <= set(futures["3"]["timings"])


def test_get_run_fields(http: httpx.Client) -> None:
    created = http.post("/v1/workflows/typed/runs",
                        json={"input": {"count": 3, "label": "x"}, "session_id": "sess-1"})
    assert created.status_code == 202
    body = created.json()
    assert set(body) >= {"run_id", "session_id", "status"}
    assert body["session_id"] == "sess-1"
    assert body["status"] in ("queued", "running", "succeeded")
    done = run(http, "typed", {"count": 3, "label": "x"})
    view = http.get(f"/v1/runs/{done.json()['run_id']}").json()
    assert view["workflow"] == "typed"
    assert view["status"] == "succeeded"
    assert view["result"] == "x:3"
    assert view["finished_at"] >= view["created_at"]


def test_agent_exception_fails_run_with_code_message_traceback(http: httpx.Client) -> None:
    r = run(http, "fail", {"message": "bad ticker"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "failed"
    err = body["error"]
    assert err["code"] == "agent_error"
    assert "ValueError: bad ticker" in err["message"]
    assert "raise ValueError(message)" in err["details"]["traceback"]
    assert err["details"]["agent"] == "Failing"
    again = http.get(f"/v1/runs/{body['run_id']}").json()
    assert again["error"]["code"] == "agent_error"


def test_failed_dependency_is_reported_not_hung(http: httpx.Client) -> None:
    body = run(http, "fail_dependency", {"message": "upstream"}).json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "dependency_failed"
    assert body["error"]["details"]["dependency"] == "1"
    assert body["error"]["details"]["cause"]["code"] == "agent_error"


def test_unserialisable_result_is_an_error(http: httpx.Client) -> None:
    body = run(http, "unserialisable", {}).json()
    assert body["status"] == "failed"
    assert "cannot be serialised" in body["error"]["message"]


def test_run_and_session_ids_in_threads_and_tasks(http: httpx.Client) -> None:
    for wf in ("context_in_threads", "context_in_tasks"):
        body = run(http, wf, {"n": 4}, session_id="ctx-session").json()
        assert body["status"] == "succeeded", body
        result = body["result"]
        assert result["run"] == body["run_id"]
        assert result["session"] == "ctx-session"
        assert result["seen"] == [{"run": body["run_id"], "session": "ctx-session"}] * 4


def test_events_stream_from_journal(http: httpx.Client) -> None:
    run_id = run(http, "chain", {"a": 1, "b": 1}).json()["run_id"]
    with http.stream("GET", f"/v1/runs/{run_id}/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line.split(": ", 1)[1] for line in resp.iter_lines()
                  if line.startswith("event: ")]
    assert events[0] == "created"
    assert "started" in events
    assert events.count("future_created") == 4  # driver + three calls
    assert events[-1] == "finished"


def test_idempotency_key_returns_same_run(http: httpx.Client) -> None:
    body = {"input": {"count": 1, "label": "idem"}, "idempotency_key": "key-123"}
    first = http.post("/v1/workflows/typed/runs", json=body)
    second = http.post("/v1/workflows/typed/runs", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json()["run_id"] == second.json()["run_id"]


def test_wait_returns_202_when_not_finished_in_time(http: httpx.Client) -> None:
    r = http.post("/v1/workflows/nap/runs", params={"wait": 0.2},
                  json={"input": {"seconds": 1.0}})
    assert r.status_code == 202
    assert r.json()["status"] in ("queued", "running")


def test_list_workflows_health_docs(http: httpx.Client) -> None:
    names = {w["name"] for w in http.get("/v1/workflows").json()["workflows"]}
    assert {"echo", "chain", "fail", "typed"} <= names
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["nodes"] == ["n1", "n2"]
    assert http.get("/docs").status_code == 200
    spec = http.get("/openapi.json").json()
    assert "/v1/workflows/{name}/runs" in spec["paths"]


def test_ventis_aliases(http: httpx.Client) -> None:
    r = http.post("/typed/run", json={"count": 7, "label": "v"})
    assert r.status_code == 202
    rid = r.json()["request_id"]
    assert len(rid) == 32
    status = wait_until_sync(lambda: http.get(f"/status/{rid}").json(),
                             until=lambda s: s["status"] == "done", what="the request done")
    assert status == {"request_id": rid, "status": "done", "result": "v:7"}
    assert http.get("/status/nope").status_code == 404


# -- bad input --------------------------------------------------------------------------------
def _error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] and err["message"]
    return err  # type: ignore[no-any-return]


def test_unknown_workflow_404(http: httpx.Client) -> None:
    err = _error(http.post("/v1/workflows/nope/runs", json={"input": {}}), 404)
    assert "nope" in str(err["message"])


def test_malformed_json_422(http: httpx.Client) -> None:
    r = http.post("/v1/workflows/typed/runs", content=b"{not json",
                  headers={"content-type": "application/json"})
    err = _error(r, 422)
    assert err["code"] == "invalid_input"
    assert "JSON" in str(err["message"])


def test_input_of_wrong_type_422_names_field(http: httpx.Client) -> None:
    err = _error(http.post("/v1/workflows/typed/runs",
                           json={"input": {"count": "many", "label": "x"}}), 422)
    assert err["details"]["errors"][0]["field"] == "input.count"  # type: ignore[index]


def test_missing_input_field_422_names_field(http: httpx.Client) -> None:
    err = _error(http.post("/v1/workflows/typed/runs", json={"input": {"count": 1}}), 422)
    assert "input.label" in str(err["message"])


def test_unknown_input_field_and_bad_envelope_422(http: httpx.Client) -> None:
    err = _error(http.post("/v1/workflows/typed/runs",
                           json={"input": {"count": 1, "label": "x", "extra": 1}}), 422)
    assert "input.extra" in str(err["message"])
    err = _error(http.post("/v1/workflows/typed/runs", json={"input": [1, 2]}), 422)
    assert "input" in str(err["message"])
    err = _error(http.post("/v1/workflows/typed/runs", json={"input": {}, "priority": "x"}), 422)
    assert "priority" in str(err["message"])
    _error(http.post("/v1/workflows/typed/runs", json=[1]), 422)


def test_body_over_limit_413(http: httpx.Client) -> None:
    big = json.dumps({"input": {"value": "x" * (1024 * 1024 + 10)}})
    _error(http.post("/v1/workflows/echo/runs", content=big,
                     headers={"content-type": "application/json"}), 413)


def test_unknown_run_404(http: httpx.Client) -> None:
    for path in ("/v1/runs/0123456789abcdef0123456789abcdef", "/v1/runs/x.y",
                 "/v1/runs/0123456789abcdef0123456789abcdef/futures",
                 "/v1/runs/0123456789abcdef0123456789abcdef/events"):
        _error(http.get(path), 404)


def test_stack_logs_are_prefixed(stack: StackHandle) -> None:
    text = stack.log.read_text()
    for name in ("gateway", "lc-n1", "lc-n2", "host-n1-1", "host-n2-1", "global-controller",
                 "state-store"):
        assert f"{name} " in text or f"{name}|" in text or f"{name} |" in text, name


def test_idempotency_key_under_concurrent_retries(stack: StackHandle) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = {"input": {"count": 2, "label": "race"}, "idempotency_key": "race-key"}

    def post(_: int) -> str:
        with httpx.Client(base_url=stack.url, timeout=30) as c:
            r = c.post("/v1/workflows/typed/runs", json=body)
            assert r.status_code == 202, r.text
            return str(r.json()["run_id"])

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(post, range(8)))
    assert len(ids) == 1


def test_dependencies_too_large_together_for_one_message(http: httpx.Client) -> None:
    """The controller cannot carry both results in the dispatch: the host reads them."""
    body = run(http, "big_pair", {"n": 600_000}).json()
    assert body["status"] == "succeeded" and body["result"] == 1_200_000, body


def test_huge_error_message_does_not_stop_the_stack(http: httpx.Client) -> None:
    body = run(http, "fail", {"message": "y" * 200_000}).json()
    assert body["status"] == "failed"
    assert run(http, "typed", {"count": 1, "label": "alive"}).json()["result"] == "alive:1"


def test_unknown_workflow_404_even_with_bad_body_and_unknown_route_json(
        http: httpx.Client) -> None:
    r = http.post("/v1/workflows/nope/runs", content=b"{bad",
                  headers={"content-type": "application/json"})
    assert _error(r, 404)["code"] == "not_found"
    assert _error(http.get("/v1/nothing/here"), 404)["code"] == "not_found"
    assert _error(http.delete("/v1/workflows"), 405)["code"] == "method_not_allowed"


def test_per_method_timeouts(http: httpx.Client) -> None:
    import time as _time

    started = _time.monotonic()
    body = run(http, "timeouts", {}).json()
    assert body["status"] == "succeeded", body
    assert body["result"] == {"quick": "ok", "hang": "timeout", "hang_sync": "timeout"}
    assert _time.monotonic() - started < 10


def test_llm_usage_on_the_future_and_tokens_as_events(http: httpx.Client) -> None:
    body = run(http, "write", {"topic": "futures"}, session_id="llm-sess").json()
    assert body["status"] == "succeeded", body
    assert body["result"]["same"] is True
    futures = {f["future"]: f for f in http.get(f"/v1/runs/{body['run_id']}/futures")
               .json()["futures"]}
    usage = futures["1"]["usage"]
    assert usage["llm_calls"] == 2 and usage["completion_tokens"] >= 2
    assert usage["prompt_tokens"] > 0 and usage["cached_tokens"] > 0  # same session, same prompt
    assert {"queue_s", "ttft_s", "total_s"} <= set(usage["llm"][0])
    with http.stream("GET", f"/v1/runs/{body['run_id']}/events") as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    tokens = [json.loads(line[6:]) for line in lines if '"event": "token"' in line]
    assert "".join(t["text"] for t in tokens[: len(tokens) // 2]) == body["result"]["text"]
