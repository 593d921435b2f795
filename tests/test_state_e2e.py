"""Managed state and sessions on the whole stack: state per (session, agent) in Redis, seen by
the next run of the session, discarded when a call fails, listed and freed via the API."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _run(http: httpx.Client, wf: str, session: str, **input: object) -> dict[str, object]:
    r = http.post(f"/v1/workflows/{wf}/runs", params={"wait": 30},
                  json={"input": input, "session_id": session})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_two_runs_of_one_session_see_each_others_state(http: httpx.Client) -> None:
    s = "sess-" + uuid.uuid4().hex[:8]
    first = _run(http, "count", s, by=2, times=2)
    assert first["result"] == {"n": 4, "history": [2, 2]}
    second = _run(http, "count", s, by=5)
    assert second["result"] == {"n": 9, "history": [2, 2, 5]}
    other = _run(http, "count", "other-" + uuid.uuid4().hex[:8], by=1)
    assert other["result"] == {"n": 1, "history": [1]}  # sessions are apart


def test_failed_call_changes_are_discarded(http: httpx.Client) -> None:
    s = "fail-" + uuid.uuid4().hex[:8]
    _run(http, "count", s, by=3)
    failed = _run(http, "count_fail", s, by=1)
    assert failed["status"] == "failed"
    assert "discarded" in failed["error"]["message"]  # type: ignore[index]
    assert _run(http, "count", s, by=0)["result"] == {"n": 3, "history": [3, 0]}


def test_parallel_calls_of_one_session_lose_nothing(http: httpx.Client) -> None:
    s = "par-" + uuid.uuid4().hex[:8]
    assert _run(http, "count_parallel", s, n=8)["result"]["n"] == 8  # type: ignore[index]


def test_session_listed_and_ended(http: httpx.Client) -> None:
    s = "api-" + uuid.uuid4().hex[:8]
    runs = [_run(http, "count", s, by=1)["run_id"] for _ in range(2)]
    info = http.get(f"/v1/sessions/{s}").json()
    assert info["session_id"] == s
    assert [r["run_id"] for r in info["runs"]] == runs
    assert info["agents"] == [{"agent": "Counter", "version": 2, "lease": None}]
    assert info["placement"] == {}  # no call running, no stateful agent used
    assert http.delete(f"/v1/sessions/{s}").json() == {"session_id": s, "ended": True}
    assert http.get(f"/v1/sessions/{s}").status_code == 404
    assert http.delete(f"/v1/sessions/{s}").status_code == 404
    # the state is gone: a new run of that id starts from nothing
    assert _run(http, "count", s, by=1)["result"] == {"n": 1, "history": [1]}


def test_unknown_session_404(http: httpx.Client) -> None:
    r = http.get("/v1/sessions/no-such-session")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert http.get("/v1/sessions/bad id!").status_code == 404


def test_stateful_agent_keeps_a_session_on_one_instance_in_order(http: httpx.Client) -> None:
    s = "conv-" + uuid.uuid4().hex[:8]
    first = _run(http, "converse", s, n=6)["result"]
    assert len({t["pid"] for t in first}) == 1  # type: ignore[index]  # one instance
    assert [t["turns"] for t in first] == [list(range(i + 1)) for i in range(6)]  # type: ignore[index]
    placement = http.get(f"/v1/sessions/{s}").json()["placement"]
    assert placement["Conversation"].endswith(".Conversation")
    again = _run(http, "converse", s, n=2)["result"]
    assert {t["pid"] for t in again} == {first[0]["pid"]}  # type: ignore[index]
    assert again[-1]["turns"] == [*range(6), 0, 1]  # type: ignore[index]
