"""The wire envelope: round trips, future refs, versions and malformed input."""

from __future__ import annotations

import msgpack
import pytest
from nalar_common.envelope import Envelope, FutureRef, pack, substitute_refs, unpack, walk_refs
from nalar_common.errors import MalformedMessage

TRICKY = ["", None, 0, "0123456789abcdef0123456789abcdef", False, [], {}, 0.0, b"\x00raw",
          {"k": [None, "", 0]}, "ünïcode", -1, 2**40]


@pytest.mark.parametrize("value", TRICKY)
def test_values_round_trip_unchanged(value: object) -> None:
    env = Envelope("result", {"status": "ok", "value": value})
    back = Envelope.decode(env.encode(), expect="result")
    assert back.body["value"] == value
    assert type(back.body["value"]) is type(value)


def test_future_refs_survive_nesting_and_are_not_strings() -> None:
    ref = FutureRef("r1", "3_1")
    data = pack({"args": [ref, "3_1", {"x": [ref]}]})
    out = unpack(data)
    assert out["args"][0] == ref
    assert out["args"][1] == "3_1"  # a look-alike string stays a string
    assert out["args"][2]["x"][0] == ref
    assert walk_refs(out) == [ref, ref]


def test_substitute_refs_nested() -> None:
    a, b = FutureRef("r", "1"), FutureRef("r", "2")
    value = [a, (b, 3), {"x": a, "y": [b, {"z": a}]}]
    assert substitute_refs(value, {a: "A", b: None}) == [
        "A", (None, 3), {"x": "A", "y": [None, {"z": "A"}]}]


def test_newer_version_rejected() -> None:
    data = msgpack.packb({"v": 99, "k": "call", "b": {}})
    with pytest.raises(MalformedMessage, match="newer"):
        Envelope.decode(data)


@pytest.mark.parametrize("data", [b"", b"\xc1garbage", msgpack.packb([1, 2]),
                                  msgpack.packb({"k": "call"}),
                                  msgpack.packb({"v": 1, "k": 3, "b": {}})])
def test_malformed_rejected(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        Envelope.decode(data)


def test_expected_kind_enforced() -> None:
    with pytest.raises(MalformedMessage, match="expected"):
        Envelope.decode(Envelope("call").encode(), expect="result")


def test_unserialisable_value_raises_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        Envelope("result", {"value": object()}).encode()
