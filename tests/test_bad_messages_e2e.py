"""Malformed messages on subjects the services consume fail their future (when they name one)
and never stop the services from handling what comes next."""

from __future__ import annotations

import httpx
import msgpack
import nats
import pytest
from e2e_stack import StackHandle
from nalar_common.envelope import Envelope
from nalar_common.testing import wait_until

pytestmark = pytest.mark.e2e


async def _result(nc: nats.NATS, stack: StackHandle, run: str, fut: str) -> dict[str, object]:
    js = nc.jetstream()

    async def stored() -> dict[str, object]:
        msg = await js.get_msg(f"{stack.prefix.upper()}_NALAR_FUTURES",
                               subject=f"{stack.prefix}.nalar.fut.{run}.{fut}", direct=True)
        return msgpack.unpackb(msg.data)["b"]  # type: ignore[no-any-return]

    return await wait_until(stored, what=f"future {run}.{fut} resolved",  # type: ignore[no-any-return]
                            ignore=(nats.js.errors.NotFoundError,))


async def test_garbage_call_body_fails_its_future(stack: StackHandle, http: httpx.Client) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        headers = {"Nalar-Run": "badrun1", "Nalar-Future": "1", "Nalar-Agent": "Echo",
                   "Nalar-Method": "echo", "Nalar-Session": "s", "Nalar-Deps": ""}
        await js.publish(f"{stack.prefix}.nalar.call.n1.Echo", b"\xc1\xc1 not msgpack",
                         headers=headers)
        body = await _result(nc, stack, "badrun1", "1")
        assert body["status"] == "error"
        assert body["error"]["code"] == "malformed_message"  # type: ignore[index]
        # no headers at all: dropped (terminated) without a future to fail
        await js.publish(f"{stack.prefix}.nalar.call.n1.Echo", b"junk")
        # oversized-but-allowed junk on telemetry and done subjects is ignored
        await nc.publish(f"{stack.prefix}.nalar.tel.n1", b"junk")
        await nc.publish(f"{stack.prefix}.nalar.done.n1", b"junk")
        # provisioning requests a host cannot read, or that name nothing it has, are refused
        for junk in (b"junk", Envelope("control", {"op": "explode"}).encode(),
                     Envelope("control", {"op": "assign", "agent": "NoSuchAgent"}).encode(),
                     Envelope("control", {"op": "release", "instance": "nope"}).encode()):
            reply = await nc.request(f"{stack.prefix}.nalar.ctl.n1-h1", junk, timeout=5)
            assert Envelope.decode(reply.data).body["ok"] is False
        await nc.flush()
    finally:
        await nc.close()
    r = http.post("/v1/workflows/chain/runs", params={"wait": 30},
                  json={"input": {"a": 1, "b": 1}})
    assert r.json()["status"] == "succeeded"


async def test_call_for_unknown_method_fails_cleanly(stack: StackHandle) -> None:
    import uuid

    from nalar_common.calls import CallSpec

    spec = CallSpec(run="badrun2", future="1", session="s", agent="Echo", method="nope")
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.jetstream().publish(f"{stack.prefix}.nalar.call.n2.Echo", spec.encode(),
                                     headers={**spec.headers(), "Nats-Msg-Id": uuid.uuid4().hex})
        body = await _result(nc, stack, "badrun2", "1")
        assert body["error"]["code"] == "not_found"  # type: ignore[index]
    finally:
        await nc.close()
