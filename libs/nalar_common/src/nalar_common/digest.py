"""Digests of call arguments and LLM requests: what the audit journal records of a call's
inputs without their content, and how a replay knows whether a call is asked again with the
same inputs (dict keys sorted, so the order arguments were built in does not matter)."""

from __future__ import annotations

import hashlib
from typing import Any

from nalar_common.envelope import ValueRef, pack


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: (str(type(kv[0])), str(kv[0])))
        return {k: _canonical(v) for k, v in items}  # msgpack keeps this order
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, ValueRef):  # by its content: where it is kept differs per run
        return ["nalar-value", value.kind, value.size, value.digest]
    return value


def digest(value: Any) -> str:
    """`sha256:<32 hex>` of the value's canonical msgpack form."""
    try:
        data = pack(_canonical(value))
    except (TypeError, ValueError, OverflowError):
        data = repr(value).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]


def args_digest(args: list[Any], kwargs: dict[str, Any]) -> str:
    """Of a call's arguments, with its dependencies already replaced by their values."""
    if not args and not kwargs:
        return NO_ARGS  # every call without arguments: computed once
    return digest([list(args), kwargs])


NO_ARGS = digest([[], {}])
