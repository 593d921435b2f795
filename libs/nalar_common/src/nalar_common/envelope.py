"""The one versioned msgpack envelope that every Nalar payload travels in.

`Envelope(kind, body)` is frozen; new body fields are only ever added with defaults, and a
reader rejects an envelope from a newer major version with `MalformedMessage`. Futures inside
arguments travel as `FutureRef` (a msgpack extension type), never as look-alike strings, so any
value (``""``, ``None``, ``0``, a 32-hex string) round-trips unchanged. A value too large for a
message travels as a `ValueRef` (another extension type) to where it is kept
(`nalar_common.values`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from nalar_common.errors import MalformedMessage

VERSION = 1
T = TypeVar("T")
_EXT_FUTURE_REF = 1
_EXT_VALUE_REF = 2


@dataclass(frozen=True, slots=True)
class FutureRef:
    """A reference to a future of some run, as it travels inside call arguments."""

    run: str
    future: str


@dataclass(frozen=True, slots=True)
class ValueRef:
    """A value kept in the values bucket (NATS Object Store) instead of inline: where it is,
    how many bytes it takes there, the SHA-256 of those bytes, and how they read back
    (`bytes` as they are, `str` as UTF-8, `msgpack` as a packed value)."""

    uri: str
    size: int
    digest: str
    kind: str


def _default(obj: Any) -> Any:
    if isinstance(obj, FutureRef):
        return msgpack.ExtType(_EXT_FUTURE_REF, msgpack.packb([obj.run, obj.future]))
    if isinstance(obj, ValueRef):
        return msgpack.ExtType(_EXT_VALUE_REF, msgpack.packb(
            [obj.uri, obj.size, obj.digest, obj.kind]))
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, _dt.datetime | _dt.date):
        return obj.isoformat()
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="python")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"value of type {type(obj).__name__} cannot be sent over the wire")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_FUTURE_REF:
        run, fut = msgpack.unpackb(data)
        return FutureRef(run, fut)
    if code == _EXT_VALUE_REF:
        fields = msgpack.unpackb(data, raw=False)
        if not (isinstance(fields, list) and len(fields) == 4 and
                isinstance(fields[0], str) and type(fields[1]) is int and fields[1] >= 0 and
                isinstance(fields[2], str) and isinstance(fields[3], str)):
            raise ValueError("a value reference must be [uri, size >= 0, digest, kind]")
        return ValueRef(*fields)
    return msgpack.ExtType(code, data)


def pack(value: Any, refs: list[ValueRef] | None = None) -> bytes:
    """msgpack with Nalar's extension types; raises `TypeError` on unserialisable values.
    `refs`: collects the `ValueRef`s met on the way (at no cost to values without any)."""
    if refs is None:
        data: bytes = msgpack.packb(value, default=_default, use_bin_type=True)
        return data

    def default(obj: Any) -> Any:
        if isinstance(obj, ValueRef):
            refs.append(obj)
        return _default(obj)

    data = msgpack.packb(value, default=default, use_bin_type=True)
    return data


def unpack(data: bytes | bytearray) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


@dataclass(frozen=True, slots=True)
class Envelope:
    """`kind` names the payload (call, result, dispatch, event, telemetry, ...)."""

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    v: int = VERSION

    def encode(self, refs: list[ValueRef] | None = None) -> bytes:
        return pack({"v": self.v, "k": self.kind, "b": self.body}, refs)

    @classmethod
    def decode(cls, data: bytes, *, expect: str | None = None) -> Envelope:
        try:
            raw = unpack(data)
        except Exception as exc:  # msgpack raises several unrelated types
            raise MalformedMessage(f"not a msgpack envelope: {exc}") from exc
        if not isinstance(raw, dict) or "k" not in raw or "v" not in raw:
            raise MalformedMessage("envelope lacks its version or kind")
        v, kind, body = raw["v"], raw["k"], raw.get("b", {})
        if not isinstance(v, int) or v > VERSION:
            raise MalformedMessage(f"envelope version {v!r} is newer than {VERSION}")
        if not isinstance(kind, str) or not isinstance(body, dict):
            raise MalformedMessage("envelope kind or body has the wrong type")
        if expect is not None and kind != expect:
            raise MalformedMessage(f"expected a {expect!r} envelope, got {kind!r}")
        return cls(kind=kind, body=body, v=v)


def walk_refs(value: Any) -> list[FutureRef]:
    """Future references nested anywhere in lists, tuples and dict values."""
    return _walk(value, FutureRef)


def walk_value_refs(value: Any) -> list[ValueRef]:
    """`ValueRef`s nested anywhere in lists, tuples and dict values."""
    return _walk(value, ValueRef)


def _walk(value: Any, cls: type[T]) -> list[T]:
    found: list[T] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, cls):
            found.append(item)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


def substitute_refs(value: Any, values: dict[FutureRef, Any]) -> Any:
    """Replace every `FutureRef` (nested in lists and dicts) by its resolved value."""
    if isinstance(value, FutureRef):
        return values[value]
    if isinstance(value, list):
        return [substitute_refs(v, values) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute_refs(v, values) for v in value)
    if isinstance(value, dict):
        return {k: substitute_refs(v, values) for k, v in value.items()}
    return value
