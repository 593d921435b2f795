"""Live event streams (`GET /v1/runs/{id}/events`) on a real stack with small limits: capped
per caller and in all (429 before any stream starts, the slot back when the client goes or
the stream ends), pings on an idle stream, and `Last-Event-ID` resume."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import httpx
import pytest
from e2e_stack import BASIC_APP, StackHandle, start_stack, stop_stack
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e

LIMITS = {"NALAR_GATEWAY_SSE_MAX_PER_PRINCIPAL": "2", "NALAR_GATEWAY_SSE_MAX_TOTAL": "3",
          "NALAR_GATEWAY_SSE_PING_S": "0.5"}


@pytest.fixture(scope="module")
def capped(nats_url: str, redis_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("events") / "nalar-up.log"
    handle = start_stack(BASIC_APP, nats_url, redis_url, log, nodes=1, extra_env=LIMITS)
    yield handle
    stop_stack(handle)


@pytest.fixture(scope="module")
def other(capped: StackHandle) -> dict[str, str]:
    """Headers of a second caller of the same tenant (not an admin): an API key."""
    made = subprocess.run([sys.executable, "-m", "nalar", "keys", "create", "--name", "other",
                           "--role", "viewer", "--tenant", "default", "--redis-url",
                           capped.redis_url, "--prefix", capped.prefix],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return {"X-API-Key": made.stdout.strip()}


@dataclass
class Sse:
    events: list[tuple[int, str]] = field(default_factory=list)  # (id, event name)
    pings: int = 0


def read(resp: httpx.Response, until: Callable[[Sse], bool] | None = None) -> Sse:
    """The events and pings of an SSE response, to its end or until `until` holds."""
    assert resp.status_code == 200, resp.read()
    out, current = Sse(), {}
    for line in resp.iter_lines():
        if line == ": ping":
            out.pings += 1
        elif line.startswith(("id: ", "event: ")):
            key, value = line.split(": ", 1)
            current[key] = value
        elif line.startswith("data: "):  # the last line of an event
            out.events.append((int(current["id"]), current["event"]))
            current = {}
        if until is not None and until(out):
            break
    return out


def waiting_run(stack: StackHandle) -> str:
    """A run that stays live (waiting for its `approval` signal) and quiet."""
    with stack.client() as c:
        run = c.post("/v1/workflows/approve_async/runs", json={"input": {"amount": 1}})
        run_id: str = run.json()["run_id"]
        wait_until_sync(lambda: c.get(f"/v1/runs/{run_id}").json()["status"] == "waiting",
                        what="the run to wait")
    return run_id


def approve(stack: StackHandle, run_id: str) -> None:
    with stack.client() as c:
        r = c.post(f"/v1/runs/{run_id}/signals/approval", json={"value": "ok"})
        assert r.status_code == 202, r.text


def open_stream(client: httpx.Client, path: str, held: ExitStack,
                headers: dict[str, str] | None = None,
                params: dict[str, str | int] | None = None) -> httpx.Response:
    """A stream's response once its headers came (the body is read later, or never)."""
    resp = client.send(client.build_request("GET", path, headers=headers, params=params),
                       stream=True)
    held.callback(resp.close)
    return resp


def open_when_free(client: httpx.Client, path: str, held: ExitStack,
                   headers: dict[str, str] | None = None,
                   params: dict[str, str | int] | None = None) -> httpx.Response:
    """A stream, asked for until a slot is free: the gateway gives one back once the stream
    that held it has closed its consumer, a moment after its client saw the end."""
    def opened() -> httpx.Response | None:
        resp = open_stream(client, path, held, headers, params)
        if resp.status_code == 200:
            return resp
        resp.close()
        assert resp.status_code == 429, resp.status_code
        return None

    return wait_until_sync(opened, what=f"a free stream slot for {path}")  # type: ignore[no-any-return]


def refused(resp: httpx.Response) -> dict[str, object]:
    assert resp.status_code == 429, resp.status_code
    assert int(resp.headers["retry-after"]) > 0
    resp.read()
    error: dict[str, object] = resp.json()["error"]
    assert error["code"] == "too_many_streams"
    return error["details"]  # type: ignore[return-value]


def test_streams_are_capped_per_caller_and_in_all(capped: StackHandle,
                                                  other: dict[str, str]) -> None:
    run_id = waiting_run(capped)
    path = f"/v1/runs/{run_id}/events"
    with capped.client() as me, capped.client() as them, ExitStack() as held:
        first, second = open_when_free(me, path, held), open_when_free(me, path, held)
        assert refused(open_stream(me, path, held)) == {"limit": 2, "scope": "principal"}
        theirs = open_when_free(them, path, held, other)  # another caller has its own two...
        # ...of the three the gateway holds in all
        assert refused(open_stream(them, path, held, other)) == {"limit": 3, "scope": "total"}

        # a client that goes away gives its slot back
        first.close()
        third = open_when_free(me, path, held)
        assert refused(open_stream(me, path, held))["scope"] == "principal"

        # a stream that ends with its run gives its slot back, the client still connected
        approve(capped, run_id)
        for resp in (second, theirs, third):
            assert read(resp).events[-1][1] == "finished"
        next_run = waiting_run(capped)
        path = f"/v1/runs/{next_run}/events"
        for client, headers in ((me, None), (me, None), (them, other)):
            open_when_free(client, path, held, headers)
        assert refused(open_stream(them, path, held, other))["scope"] == "total"
    approve(capped, next_run)


def test_an_idle_stream_gets_pings(capped: StackHandle) -> None:
    run_id = waiting_run(capped)
    path = f"/v1/runs/{run_id}/events"
    with capped.client() as c, ExitStack() as held:
        got = read(open_when_free(c, path, held), until=lambda s: s.pings >= 2)
        assert got.events[0][1] == "created" and got.events[-1][1] == "waiting"
        stored = read(open_when_free(c, path, held, params={"follow": "false"}))
        assert stored.events == got.events and stored.pings == 0  # it ends: no pings
    approve(capped, run_id)


def test_last_event_id_resumes_after_that_event(capped: StackHandle) -> None:
    run_id = waiting_run(capped)
    path = f"/v1/runs/{run_id}/events"
    with capped.client() as c, ExitStack() as held:
        seen = read(open_when_free(c, path, held),
                    until=lambda s: bool(s.events) and s.events[-1][1] == "waiting")
        left_at = seen.events[-1][0]
        approve(capped, run_id)
        # follows from there until the run finishes
        rest = read(open_when_free(c, path, held, {"Last-Event-ID": str(left_at)})).events
        every = read(open_when_free(c, path, held, params={"follow": "false"})).events
        end = next(i for i, kind in every if kind == "finished")
        assert rest == [e for e in every if left_at < e[0] <= end]
        assert rest[-1][1] == "finished" and len(rest) >= 2
        assert every[:len(seen.events)] == seen.events

        mid = every[2][0]
        for headers, params in (({}, {"after": mid}),
                                ({"Last-Event-ID": str(mid)}, {"after": 0})):  # header wins
            resumed = read(open_when_free(c, path, held, headers,
                                          {**params, "follow": "false"}))
            assert resumed.events == [e for e in every if e[0] > mid]
        # resuming after the end: a follower ends at once, with what came after if anything
        ended = read(open_when_free(c, path, held, {"Last-Event-ID": str(end)}))
        assert ended.events == [e for e in every if e[0] > end]

        for bad in ("abc", "-1", "1.5", "9" * 20):
            r = c.get(path, headers={"Last-Event-ID": bad})
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", bad
        assert c.get(path, params={"after": -1}).status_code == 422


def test_refused_requests_take_no_slot(capped: StackHandle) -> None:
    """404s and 422s come before a slot is taken: more of them than the limit leave the
    caller's streams free."""
    run_id = waiting_run(capped)
    with capped.client() as c, ExitStack() as held:
        for _ in range(3):
            assert c.get("/v1/runs/0123456789abcdef0123456789abcdef/events").status_code == 404
            assert c.get(f"/v1/runs/{run_id}/events",
                         headers={"Last-Event-ID": "x"}).status_code == 422
        for _ in range(2):
            open_when_free(c, f"/v1/runs/{run_id}/events", held)
    approve(capped, run_id)


def test_the_openapi_document_describes_the_stream(capped: StackHandle) -> None:
    with capped.client() as c:
        doc = c.get("/openapi.json").json()["paths"]["/v1/runs/{run_id}/events"]["get"]
    assert "text/event-stream" in doc["responses"]["200"]["content"]
    assert "429" in doc["responses"]
    assert {p["name"] for p in doc["parameters"]} >= {"follow", "after", "last-event-id"}
