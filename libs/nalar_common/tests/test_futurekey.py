"""FutureKey builds every name of a future in one place, and they agree with what the
services used to format by hand (message ids already stored must keep matching)."""

from __future__ import annotations

from nalar_common.calls import CallSpec, result_headers
from nalar_common.futurekey import FutureKey
from nalar_common.subjects import Headers as H
from nalar_common.subjects import Names


def test_names_built_from_a_key() -> None:
    key = FutureKey("r1", "3")
    assert str(key) == "r1.3" == key.result_msg_id
    assert key.call_msg_id(hop=2, attempt=1) == "r1.3.c2.a1"
    assert key.op_id() == "r1.3" and key.op_id("charge") == "r1.3.charge"
    assert key.subject(Names("p")) == "p.nalar.fut.r1.3"
    assert FutureKey.of({H.RUN: "r1", H.FUTURE: "3"}) == key
    assert {key: 1}[FutureKey("r1", "3")] == 1  # a value: hashable, equal by fields


def test_calls_and_results_use_it() -> None:
    spec = CallSpec(run="r1", future="3", session="s", agent="A", method="m", hop=1, attempt=2)
    headers = spec.headers()
    assert spec.key == "r1.3" and headers[H.MSG_ID] == "r1.3.c1.a2"
    assert result_headers(headers, status="ok", executor="x")[H.MSG_ID] == "r1.3"
