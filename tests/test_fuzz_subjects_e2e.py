"""Hostile input on every subject a service consumes: random bytes, truncated envelopes,
envelopes of the wrong kind or with wrong field types, random headers, an oversized call.
Every service stays up and serves, and what it could not read is in the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from e2e_stack import BASIC_APP, Services, start_services
from nalar_common.calls import CallSpec
from nalar_common.envelope import Envelope

pytestmark = pytest.mark.e2e

ROUNDS = 25


@pytest.fixture
def svc(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[Services]:
    handle = start_services(BASIC_APP, nats_url, redis_url, tmp_path, [
        ("lc", "nalar_local_controller", {"NALAR_NODE_NAME": "n1"}),
        ("host-a", "nalar_agent_host", {"NALAR_NODE_NAME": "n1", "NALAR_AGENT_HOST_HOST_ID": "a"}),
        ("gc", "nalar_global_controller", {}),
        ("state", "nalar_state_store", {}),
        ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_LC_MAX_CALL_BYTES": "65536"})
    try:
        handle.wait_until(lambda: httpx.get(f"{handle.url}/readyz").status_code == 200)
        yield handle
    finally:
        handle.stop()


def _junk(rng: random.Random, valid: bytes) -> bytes:
    """Random bytes, a cut-off valid envelope, or a valid envelope of the wrong shape."""
    pick = rng.randrange(5)
    if pick == 0:
        return rng.randbytes(rng.randrange(0, 2048))
    if pick == 1:
        return valid[:rng.randrange(0, max(1, len(valid)))]
    if pick == 2:
        return Envelope(rng.choice(["call", "dispatch", "event", "telemetry", "control", "x"]),
                        {"b": rng.randbytes(8), "n": rng.random()}).encode()
    if pick == 3:  # the right kind, fields of the wrong types
        return Envelope("dispatch", {"call": 5, "headers": "x", "token": [1],
                                     "instance": {}}).encode()
    return b"\x81\xa1v\x63" + rng.randbytes(16)  # a version from the future


def _headers(rng: random.Random) -> dict[str, str] | None:
    if rng.random() < 0.3:
        return None
    names = ["Nalar-Run", "Nalar-Future", "Nalar-Agent", "Nalar-Method", "Nalar-Deps",
             "Nalar-Priority", "Nalar-Attempt", "Nalar-Dispatch", "Nalar-Deadline", "X-Junk"]
    return {rng.choice(names): rng.choice(["", "1", "-5", "x" * 300, "a,b,,c", "1e309",
                                           "run-" + str(rng.randrange(99))])
            for _ in range(rng.randrange(1, 6))}


async def _fuzz(svc: Services, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    p = f"{svc.prefix}.nalar"
    call = CallSpec(run="r" * 32, future="1", session="s", agent="Echo", method="echo",
                    args=["x"], created_at=time.time())
    valid = {"call": call.encode(), "other": Envelope("dispatch", {"call": call.encode(),
                                                                   "headers": {}}).encode()}
    nc = await nats.connect(svc.nats_url)
    js = nc.jetstream()
    sent: dict[str, int] = {}
    core = [f"{p}.exec.a", f"{p}.done.n1", f"{p}.tel.fuzz", f"{p}.cancel.{'z' * 8}"]
    requests = [f"{p}.ctl.a", f"{p}.state.session"]
    streamed = [f"{p}.call.n1.Echo", f"{p}.call.n1.NoSuchAgent", f"{p}.run.fuzzrun.created",
                f"{p}.run.fuzzrun.signal"]
    try:
        for _ in range(ROUNDS):
            for subject in core:
                await nc.publish(subject, _junk(rng, valid["other"]), headers=_headers(rng))
                sent[subject] = sent.get(subject, 0) + 1
            for subject in requests:
                try:
                    await nc.request(subject, _junk(rng, valid["other"]), timeout=2,
                                     headers=_headers(rng))
                except Exception:
                    pass  # no answer is allowed; crashing is not
                sent[subject] = sent.get(subject, 0) + 1
            for subject in streamed:
                await js.publish(subject, _junk(rng, valid["call"]), headers=_headers(rng))
                sent[subject] = sent.get(subject, 0) + 1
        # a call far over the controller's size limit
        await js.publish(f"{p}.call.n1.Echo", b"\x00" * 200_000,
                         headers={"Nalar-Run": "big", "Nalar-Future": "1",
                                  "Nalar-Agent": "Echo", "Nalar-Method": "echo"})
        for bucket in (f"{svc.prefix}_nalar_instances", f"{svc.prefix}_nalar_policy"):
            kv = await js.key_value(bucket)
            await kv.put("fuzz-junk", rng.randbytes(64))
        await nc.flush()
    finally:
        await nc.close()
    return sent


def test_every_consumed_subject_survives_junk(svc: Services) -> None:
    sent = asyncio.run(_fuzz(svc, seed=6))
    assert sum(sent.values()) >= ROUNDS * 10
    kinds_sent = {"call", "exec", "done", "ctl", "state", "run", "tel"}

    def dead_letters() -> list[dict[str, Any]]:
        return httpx.get(f"{svc.url}/v1/dlq",  # type: ignore[no-any-return]
                         params={"limit": 10_000}).json()["dead_letters"]

    # every service chewed through it: junk of each kind is set aside, the oversized call
    # (sent last) too; a service that dies meanwhile fails the wait at once
    svc.wait_until(dead_letters, what="junk of every kind in the dead-letter stream",
                   until=lambda entries: kinds_sent <= {e["kind"] for e in entries} and
                   any(e["run_id"] == "big" for e in entries))
    svc.check_alive()
    out = httpx.post(f"{svc.url}/v1/workflows/chain/runs", params={"wait": 60},
                     json={"input": {"a": 2, "b": 3}}).json()
    assert out["status"] == "succeeded" and out["result"] == 31, (out, svc.logs())
    ready = httpx.get(f"{svc.url}/readyz").json()
    assert ready["status"] == "ready" and ready["policy_revision"], ready
    entries = dead_letters()
    kinds = {e["kind"] for e in entries}
    assert kinds_sent <= kinds, kinds
    big = [e for e in entries if e["run_id"] == "big"]
    assert big and "too large" in big[0]["reason"] and big[0]["size"] == 200_000
    svc.check_alive()
    for path in svc.log_paths.values():  # handled, not crashed through
        assert "Traceback" not in path.read_text(errors="replace"), svc.logs(20_000)
