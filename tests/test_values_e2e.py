"""Values too large for a message, on a real stack (tests/apps/bigvalues): a result or an
argument over the threshold is kept in the values bucket (NATS Object Store) and travels by
reference (`Nalar-Value-Ref`); readers get the value itself, a 300 MiB one included, and
`GET /v1/runs/{id}/futures/{future}/value` streams it."""

from __future__ import annotations

import base64
import hashlib
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import redis
from e2e_stack import ROOT, Services, one_node
from nalar.app import load_app
from nalar.local import LocalRuntime
from nalar_common.testing import wait_until_sync

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "bigvalues"
MIB = 1 << 20


@pytest.fixture(scope="module")
def stack(nats_url: str, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with one_node(APP, nats_url, redis_url, tmp_path_factory.mktemp("values")) as handle:
        yield handle


def run(url: str, workflow: str, wait: float = 300, **inputs: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/workflows/{workflow}/runs", params={"wait": wait},
                   json={"input": inputs}, timeout=wait + 30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "succeeded", body.get("error")
    return body


def seeded(mib: float, seed: int) -> bytes:
    """What the app's `Blobs.make(mib, seed)` returns."""
    rng, size = random.Random(seed), int(mib * MIB)
    return b"".join(rng.randbytes(min(MIB, size - at)) for at in range(0, size, MIB))


def stream_digest(url: str) -> tuple[int, str, httpx.Headers]:
    """Read a streamed value chunk by chunk: its size and SHA-256, never whole in memory."""
    sha, size = hashlib.sha256(), 0
    with httpx.stream("GET", url, timeout=300) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_bytes():
            sha.update(chunk)
            size += len(chunk)
        return size, sha.hexdigest(), r.headers


def test_a_300_mib_result_round_trips(stack: Services, tmp_path: Path) -> None:
    """Made by one agent, read by another and by the driver, returned as the run's result,
    and streamed to the client: the same bytes everywhere."""
    body = run(stack.url, "roundtrip", mib=300, seed=11)
    ref = body["result"]["$value_ref"]
    assert ref["size_bytes"] == 300 * MIB and ref["kind"] == "bytes"
    assert ref["uri"].startswith("nalar-value://") and ref["href"].endswith("/futures/0/value")
    size, digest, headers = stream_digest(stack.url + ref["href"])
    assert (size, digest) == (300 * MIB, hashlib.sha256(seeded(300, 11)).hexdigest())
    assert headers["content-type"] == "application/octet-stream"
    assert headers["nalar-value-ref"] == ref["uri"]
    out = tmp_path / "result.bin"
    cli = subprocess.run([sys.executable, "-m", "nalar", "runs", "value", body["run_id"],
                          "-o", str(out), "--url", stack.url], capture_output=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert out.stat().st_size == 300 * MIB
    with out.open("rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest


def test_a_future_passed_on_is_never_read_by_the_driver(stack: Services) -> None:
    body = run(stack.url, "passed_on", mib=5, seed=3)
    assert body["result"] == {"size": 5 * MIB,
                              "sha256": hashlib.sha256(seeded(5, 3)).hexdigest()}
    futures = httpx.get(f"{stack.url}/v1/runs/{body['run_id']}/futures", timeout=30).json()
    made = next(f for f in futures["futures"] if f["method"] == "make")
    size, _, _ = stream_digest(f"{stack.url}/v1/runs/{body['run_id']}/futures/"
                               f"{made['future']}/value")
    assert size == 5 * MIB


def test_arguments_too_large_for_a_message_go_by_reference(stack: Services) -> None:
    body = run(stack.url, "big_arguments", mib=3, rows=40_000)
    text = ("nalar " * (3 * MIB // 6 + 1))[:3 * MIB]
    assert body["result"] == {"chars": 3 * MIB, "sha256": hashlib.sha256(text.encode())
                              .hexdigest(), "rows": 40_000}


def test_text_and_structures_read_back_as_themselves(stack: Services) -> None:
    body = run(stack.url, "text_and_table", mib=2, rows=50_000)
    ref = body["result"]["$value_ref"]  # the driver's result: a dict of both, over 1 MiB
    assert ref["kind"] == "msgpack"
    value = httpx.get(stack.url + ref["href"], timeout=120).json()
    assert len(value["text"]) == 2 * MIB and value["text"].startswith("nalar nalar")
    assert len(value["table"]["rows"]) == 50_000 and value["table"]["rows"][7]["name"] == "row-7"
    futures = httpx.get(f"{stack.url}/v1/runs/{body['run_id']}/futures", timeout=30).json()
    text = next(f for f in futures["futures"] if f["method"] == "text")
    r = httpx.get(f"{stack.url}/v1/runs/{body['run_id']}/futures/{text['future']}/value",
                  timeout=60)
    assert r.headers["content-type"].startswith("text/plain") and len(r.text) == 2 * MIB


def test_two_results_too_large_together_for_one_dispatch(stack: Services) -> None:
    """Each dependency fits a message, both together do not: the host reads them itself."""
    body = run(stack.url, "pair", mib=0.6)
    assert body["result"] == [hashlib.sha256(seeded(0.6, s)).hexdigest() for s in (1, 2)]


def test_value_endpoint_errors(stack: Services) -> None:
    body = run(stack.url, "passed_on", mib=0.001, seed=1)
    small = httpx.get(f"{stack.url}/v1/runs/{body['run_id']}/futures/0/value", timeout=30)
    assert small.status_code == 200 and small.json()["size"] == 1048
    missing = httpx.get(f"{stack.url}/v1/runs/{body['run_id']}/futures/99/value", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    other = httpx.get(f"{stack.url}/v1/runs/nope/futures/0/value", timeout=30)
    assert other.status_code == 404
    bad = httpx.get(f"{stack.url}/v1/runs/{body['run_id']}/futures/a.b/value", timeout=30)
    assert bad.status_code == 404


def test_a_graph_records_large_results_by_uri(stack: Services) -> None:
    r = httpx.post(f"{stack.url}/v1/graphs/bulky/runs", params={"wait": 120},
                   json={"input": {"input": {"mib": 2}}}, timeout=150)
    assert r.status_code == 200 and r.json().get("result") == {"chars": 100_000}, r.text
    run_id = r.json()["run_id"]
    records = httpx.get(f"{stack.url}/v1/runs/{run_id}/executions", timeout=30).json()
    fetch, route, summarize = (e.get("result", e) for e in records["executions"])
    assert fetch["inline"] is None and fetch["size_bytes"] > 2 * MIB  # the future's value
    assert route["inline"] is None and route["uri"].startswith("nalar-value://")
    assert summarize["inline"] == {"output": {"chars": 100_000}, "final": True}
    for rec in (fetch, route):
        got = httpx.get(stack.url + rec["href"], timeout=60)
        assert got.status_code == 200 and len(got.content) > 100_000


def test_a_reference_passed_on_by_code_reaches_the_agent_as_its_value(stack: Services) -> None:
    body = run(stack.url, "by_reference", mib=2, seed=4)
    assert body["result"] == {"size": 2 * MIB,
                              "sha256": hashlib.sha256(seeded(2, 4)).hexdigest()}


def test_a_signal_value_too_large_for_a_message(stack: Services) -> None:
    text = "s" * 1_000_000  # under the gateway's limit, over the inline limit
    r = httpx.post(f"{stack.url}/v1/workflows/signalled/runs", json={"input": {}}, timeout=30)
    run_id = r.json()["run_id"]
    wait_until_sync(lambda: httpx.get(f"{stack.url}/v1/runs/{run_id}", timeout=10)
                    .json()["status"] == "waiting", what="the run waiting for its signal")
    sent = httpx.post(f"{stack.url}/v1/runs/{run_id}/signals/text", json={"value": text},
                      timeout=30)
    assert sent.status_code == 202, sent.text
    done = wait_until_sync(lambda: (v := httpx.get(f"{stack.url}/v1/runs/{run_id}",
                                                   timeout=10).json())["status"] != "running"
                           and v, what="the run finished", timeout=60)
    assert done.get("result") == {"chars": 1_000_000, "rows": 0,
                              "sha256": hashlib.sha256(text.encode()).hexdigest()}, done


def test_a_large_result_of_a_tool_with_side_effects_is_ledgered_by_reference(
        stack: Services) -> None:
    body = run(stack.url, "published", mib=3, seed=9)
    assert body["result"]["sha256"] == hashlib.sha256(seeded(3, 9)).hexdigest()
    r = redis.Redis.from_url(stack.redis_url)
    try:
        keys = [k for k in r.scan_iter(match=f"*ledger*{body['run_id']}*") if b"claim" not in k]
        assert keys, "the tool's ledger record"
        assert all(len(r.hget(k, "result") or b"") < 4096 for k in keys)
    finally:
        r.close()


def test_structures_holding_bytes_read_as_json_or_msgpack(stack: Services) -> None:
    body = run(stack.url, "mixed")
    assert body["result"] == MIB + 2
    futures = httpx.get(f"{stack.url}/v1/runs/{body['run_id']}/futures", timeout=30).json()
    fid = next(f for f in futures["futures"] if f["agent"] == "Blobs")["future"]
    url = f"{stack.url}/v1/runs/{body['run_id']}/futures/{fid}/value"
    as_json = httpx.get(url, timeout=60)
    assert as_json.status_code == 200 and as_json.json()["n"] == 1
    assert base64.b64decode(as_json.json()["raw"]) == b"\x00\x01" * (MIB // 2 + 1)
    packed = httpx.get(url, headers={"Accept": "application/msgpack"}, timeout=60)
    assert packed.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(packed.content)["raw"] == b"\x00\x01" * (MIB // 2 + 1)
    digest = packed.headers["digest"].split("=", 1)[1]
    assert base64.b64decode(digest) == hashlib.sha256(packed.content).digest()


async def test_local_mode_reads_large_values_too() -> None:
    rt = LocalRuntime(load_app(Path(APP)))
    async with rt:
        data = await rt.run("roundtrip", {"mib": 300, "seed": 11})
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(seeded(300, 11)).hexdigest()
        assert (await rt.run("big_arguments", {"mib": 3, "rows": 1000}))["rows"] == 1000
