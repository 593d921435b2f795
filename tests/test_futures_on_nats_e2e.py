"""A run's futures read back from JetStream the way an outside client would: plain nats-py and
msgpack, no Nalar code (DESIGN §3)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import msgpack
import nats
import pytest
from e2e_stack import StackHandle
from nats.js.errors import BadRequestError

pytestmark = pytest.mark.e2e

HEADERS = ("Nalar-Future", "Nalar-Run", "Nalar-Session", "Nalar-Deps", "Nalar-Parent",
           "Nalar-Agent", "Nalar-Method", "Nalar-Priority", "Nalar-Attempt", "Nalar-Executor",
           "Nalar-Status", "Nalar-Policy-Rev", "Nats-Msg-Id")


async def _read(stack: StackHandle, stream: str, subject: str) -> list[nats.aio.msg.Msg]:
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
        out = []
        while True:
            msg = await sub.next_msg(timeout=5)
            out.append(msg)
            if msg.metadata.num_pending == 0:
                break
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def test_futures_readable_with_plain_nats_client(stack: StackHandle,
                                                       http: httpx.Client) -> None:
    body = http.post("/v1/workflows/chain/runs", params={"wait": 30},
                     json={"input": {"a": 1, "b": 2}, "session_id": "outside",
                           "priority": 3}).json()
    run = body["run_id"]
    p = stack.prefix
    msgs = await _read(stack, f"{p.upper()}_NALAR_FUTURES", f"{p}.nalar.fut.{run}.>")
    by_future = {m.headers["Nalar-Future"]: m for m in msgs}
    assert set(by_future) == {"0", "1", "2", "3"}
    for fid, m in by_future.items():
        assert m.subject == f"{p}.nalar.fut.{run}.{fid}"
        for h in HEADERS:
            assert h in m.headers, (fid, h)
        assert m.headers["Nalar-Run"] == run
        assert m.headers["Nalar-Session"] == "outside"
        assert m.headers["Nalar-Status"] == "ok"
        assert m.headers["Nalar-Priority"] == "3"  # inherited from the run
        assert m.headers["Nats-Msg-Id"] == f"{run}.{fid}"
        envelope = msgpack.unpackb(m.data)
        assert envelope["v"] == 1 and envelope["k"] == "result"
        assert envelope["b"]["status"] == "ok"
    assert by_future["3"].headers["Nalar-Deps"] in ("1,2", "2,1")
    assert by_future["2"].headers["Nalar-Deps"] == "1"
    assert by_future["1"].headers["Nalar-Parent"] == "0"
    assert msgpack.unpackb(by_future["1"].data)["b"]["value"] == 3
    assert msgpack.unpackb(by_future["0"].data)["b"]["value"] == body["result"]

    journal = await _read(stack, f"{p.upper()}_NALAR_RUNS", f"{p}.nalar.run.{run}.>")
    kinds = [m.subject.rsplit(".", 1)[1] for m in journal]
    assert kinds[0] == "created" and "finished" in kinds
    created = [msgpack.unpackb(m.data)["b"] for m in journal
               if m.subject.endswith("future_created")]
    assert {c["future"]: c["deps"] for c in created}["3"] in (["1", "2"], ["2", "1"])


async def test_results_are_write_once(stack: StackHandle, http: httpx.Client) -> None:
    run = http.post("/v1/workflows/typed/runs", params={"wait": 30},
                    json={"input": {"count": 1, "label": "once"}}).json()["run_id"]
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        with pytest.raises(BadRequestError) as info:
            await js.publish(f"{stack.prefix}.nalar.fut.{run}.0", b"forged",
                             headers={"Nats-Expected-Last-Subject-Sequence": "0"})
        assert info.value.err_code == 10071
    finally:
        await nc.close()
    assert http.get(f"/v1/runs/{run}").json()["result"] == "once:1"


def test_nalar_futures_command(stack: StackHandle, http: httpx.Client) -> None:
    run = http.post("/v1/workflows/chain/runs", params={"wait": 30},
                    json={"input": {"a": 4, "b": 4}}).json()["run_id"]
    out = subprocess.run([sys.executable, "-m", "nalar", "futures", run, "--nats-url",
                          stack.nats_url, "--prefix", stack.prefix],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 4
    assert '"Nalar-Deps": "1"' in out
