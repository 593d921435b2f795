"""Hostile JSON bodies are refused as InvalidInput before anything reads them further, and
stored values that JSON cannot say never break a response."""

from __future__ import annotations

import json

import pytest
from nalar_common.errors import InvalidInput
from nalar_gateway.bodies import MAX_DEPTH, SafeJSONResponse, depth, parse_json


def nested(levels: int) -> bytes:
    return ("[" * levels + "]" * levels).encode()


@pytest.mark.parametrize("body", [
    nested(MAX_DEPTH + 1), nested(600), nested(1000), nested(100_000),
    b'{"input": {"x": NaN}}', b'{"input": {"x": Infinity}}', b'[-Infinity]', b'[1e400]',
    b'{"x": -1.5e999}',
    b'{"x": ' + b"9" * 5000 + b"}",  # past Python's int digit limit
    b'{"x": "\xff"}', b"{", b'{"a": 1} trailing',
])
def test_hostile_bodies_are_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_json(body)
    assert err.value.http_status == 422 and err.value.details["errors"][0]["field"] == "body"


def test_what_is_fine_passes() -> None:
    assert parse_json(b"") == {}
    assert parse_json(nested(MAX_DEPTH)) is not None
    assert parse_json(b'{"input": {"x": 1.5, "y": [1, {"z": null}]}}')["input"]["x"] == 1.5
    assert depth({"a": [1, {"b": []}]}) == 4 and depth(5) == 0


def test_a_stored_nan_is_rendered_as_null_not_a_500() -> None:
    body = SafeJSONResponse({"result": [float("nan"), {"x": float("inf")}, 1.0]}).body
    assert json.loads(body) == {"result": [None, {"x": None}, 1.0]}
