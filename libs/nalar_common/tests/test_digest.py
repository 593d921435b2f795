"""Argument digests: the same inputs give the same digest whatever the order their dicts were
built in; any change of a value changes it."""

from nalar_common.digest import args_digest, digest


def test_key_order_does_not_matter_and_values_do() -> None:
    a = args_digest([{"symbol": "ab", "price": 102}], {"k": [1, 2], "j": None})
    b = args_digest([{"price": 102, "symbol": "ab"}], {"j": None, "k": (1, 2)})
    assert a == b and a.startswith("sha256:") and len(a) == 7 + 32
    assert a != args_digest([{"symbol": "ab", "price": 103}], {"k": [1, 2], "j": None})
    assert digest("1") != digest(1) and digest([]) != digest({})
    assert digest(object()).startswith("sha256:")  # not serialisable: its repr
