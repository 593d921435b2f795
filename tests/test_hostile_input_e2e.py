"""Hostile JSON gets a 4xx at once, never a 5xx or a traceback, and leaves nothing behind:
deep nesting, NaN and infinities, numbers of thousands of digits, a body under the HTTP
limit but over what one NATS message carries, a timeout past the journal's retention."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.e2e

RUNS = "/v1/workflows/echo/runs"


def raw(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return http.post(path, content=body, headers={"content-type": "application/json"})


def refused(r: httpx.Response, status: int = 422) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text and 'File "/' not in r.text, r.text
    error = r.json()["error"]
    assert isinstance(error, dict)
    return error


@pytest.mark.parametrize("levels", [65, 600, 1000, 100_000])
def test_deep_nesting_is_refused_and_leaves_the_journal_readable(
        http: httpx.Client, levels: int) -> None:
    body = b'{"input": {"value": ' + b"[" * levels + b"]" * levels + b"}}"
    assert "nested deeper than 64" in str(refused(raw(http, RUNS, body))["message"])
    # replay overrides and signal values are read the same way
    assert refused(raw(http, "/v1/runs/abc/replay", b'{"overrides": {"1": '
                       + b"[" * levels + b"]" * levels + b"}}"))
    ok = http.post(RUNS, params={"wait": 30}, json={"input": {"value": [[[[1]]]]}})
    assert ok.status_code == 200 and ok.json()["result"] == [[[[1]]]], ok.text
    assert http.get(f"/v1/runs/{ok.json()['run_id']}/journal").status_code == 200


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"9" * 5000])
def test_nan_infinity_and_huge_numbers_are_refused(http: httpx.Client, literal: bytes) -> None:
    key = uuid.uuid4().hex
    body = b'{"idempotency_key": "' + key.encode() + b'", "input": {"value": ' + literal + b"}}"
    refused(raw(http, RUNS, body))
    # nothing was accepted: the same idempotency key starts a fresh, good run
    ok = http.post(RUNS, params={"wait": 30}, json={"idempotency_key": key,
                                                    "input": {"value": 1}})
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded", ok.text


def test_a_body_nats_cannot_carry_is_413_at_once_and_claims_nothing(http: httpx.Client) -> None:
    key, session = uuid.uuid4().hex, uuid.uuid4().hex
    big = "x" * (1_048_576 - 200)  # under the HTTP limit, over one NATS message
    started = time.monotonic()
    r = http.post(RUNS, json={"idempotency_key": key, "session_id": session,
                              "input": {"value": big}})
    assert time.monotonic() - started < 5  # at once, not after minutes of retries
    error = refused(r, 413)
    assert error["code"] == "payload_too_large"
    assert http.get(f"/v1/sessions/{session}").status_code == 404  # no orphan session
    ok = http.post(RUNS, params={"wait": 30}, json={"idempotency_key": key,
                                                    "session_id": session,
                                                    "input": {"value": "small"}})
    assert ok.status_code == 200 and ok.json()["result"] == "small", ok.text


def test_a_timeout_past_the_retention_is_refused(http: httpx.Client) -> None:
    error = refused(http.post(RUNS, json={"input": {"value": 1},
                                          "timeout_s": 365 * 24 * 3600}))
    assert "kept" in str(error["message"])
    ok = http.post(RUNS, params={"wait": 30}, json={"input": {"value": 1}, "timeout_s": 3600})
    assert ok.status_code == 200, ok.text
    assert ok.json()["deadline"] - time.time() <= 3600


def test_ids_with_a_trailing_newline_and_overflowing_numbers_are_refused(
        http: httpx.Client) -> None:
    # "victim\n" once passed `^...$`, and NATS headers strip the newline: another session
    refused(http.post(RUNS, json={"input": {"value": 1}, "session_id": "victim\n"}))
    refused(raw(http, RUNS, b'{"input": {"value": 1e400}}'))
    assert http.get("/v1/runs/abc%0A").status_code == 404


def test_an_oversized_signal_value_is_413_before_anything_is_written(
        http: httpx.Client) -> None:
    started = http.post("/v1/workflows/approve/runs", json={"input": {"amount": 1}}).json()
    big = {"value": "x" * (1_048_576 - 200)}
    error = refused(http.post(f"/v1/runs/{started['run_id']}/signals/approval", json=big), 413)
    assert error["code"] == "payload_too_large"
    http.post(f"/v1/runs/{started['run_id']}/cancel")
