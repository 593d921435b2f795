"""The machinery under every typed wire message: field plans read once from a frozen
dataclass's annotations, a strict and fast map decoder, and the one error it raises.

A `Record` is a map inside a body (a dependency, an instance's load); a `Message` is a whole
body with its envelope kind and version. Decoding checks each field's type exactly (no
coercion: `"1"` is not an int, `true` is not an int, an int is accepted for a float), fills
defaults for missing fields that have one, and ignores unknown fields (a newer writer of the
same version added them with defaults).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin, get_type_hints

from nalar_common.envelope import pack, unpack
from nalar_common.errors import MalformedMessage


class DecodeError(MalformedMessage):
    """A message that does not decode as its type: not msgpack, the wrong kind, a newer
    version, a missing or ill-typed field. `kind` and `field` say which (also in `details`,
    so they survive the wire); the code stays `malformed_message`, so it crosses the wire and
    comes back as `MalformedMessage`."""

    def __init__(self, message: str = "", *, kind: str = "", field: str = "",
                 details: dict[str, Any] | None = None, code: str | None = None,
                 retryable: bool | None = None) -> None:
        extra = {k: v for k, v in (("kind", kind), ("field", field)) if v}
        super().__init__(message, details={**(details or {}), **extra}, code=code,
                         retryable=retryable)
        self.kind = kind
        self.field = field


class _Mismatch(Exception):
    """A field that does not fit (internal: `Message` turns it into a `DecodeError`); `path`
    grows outward as nested records unwind."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason, self.path = reason, path


def meaning(text: str, *, omit: bool = False, header: str = "") -> dict[str, Any]:
    """Field metadata: what the field means (its row in docs/protocol.md); `omit`: left out
    of the map while at its default; `header`: the header that carries it (`Done`)."""
    return {"doc": text, "omit": omit, "header": header}


_REQUIRED: Any = dataclasses.MISSING
_ABSENT = object()
Check = Callable[[Any], Any]


def type_name(value: Any) -> str:
    """A value's type as msgpack says it."""
    return _WIRE_NAMES.get(type(value), type(value).__name__)


_WIRE_NAMES = {str: "str", bytes: "bin", bool: "bool", int: "int", float: "float",
               type(None): "nil", dict: "map", list: "array", tuple: "array"}


def _float(v: Any) -> float:
    if type(v) is float:
        return v
    if type(v) is int:
        return float(v)
    raise _Mismatch("")


def _exact(tp: type) -> Check:
    def check(v: Any) -> Any:
        if type(v) is not tp:
            raise _Mismatch("")
        return v
    return check


def _optional(inner: Check) -> Check:
    def check(v: Any) -> Any:
        return None if v is None else inner(v)
    return check


def _literal(allowed: frozenset[Any], desc: str) -> Check:
    def check(v: Any) -> Any:
        if type(v) is not str or v not in allowed:
            raise _Mismatch(f"must be {desc}, got {v!r}"[:200])
        return v
    return check


def _inside(exc: _Mismatch, key: Any, value: Any, desc: str) -> _Mismatch:
    """An item of a container did not fit: say which, by its key or index."""
    if exc.path:
        return _Mismatch(exc.reason, f"{key}.{exc.path}")
    return _Mismatch(exc.reason or f"must be {desc}, got {type_name(value)}", str(key))


def _array(item: Check | None, exact: type | None, desc: str, out: type) -> Check:
    def check(v: Any) -> Any:
        if type(v) is not list and type(v) is not tuple:
            raise _Mismatch("")
        if exact is not None:
            for i, x in enumerate(v):
                if type(x) is not exact:
                    raise _Mismatch(f"must be {desc}, got {type_name(x)}", str(i))
        elif item is not None:
            items = []
            for i, x in enumerate(v):
                try:
                    items.append(item(x))
                except _Mismatch as exc:
                    raise _inside(exc, i, x, desc) from None
            v = items
        return v if type(v) is out else out(v)
    return check


def _map(value: Check | None, exact: type | None, desc: str) -> Check:
    def check(v: Any) -> Any:
        if type(v) is not dict:
            raise _Mismatch("")
        if value is None and exact is None:
            return v  # a free-form map (`dict[str, Any]`): its reader looks inside
        for k, x in v.items():
            if type(k) is not str:
                raise _Mismatch(f"must have str keys, got {type_name(k)} {k!r:.50}")
            if exact is not None and type(x) is not exact:
                raise _Mismatch(f"must be {desc}, got {type_name(x)}", k)
        if exact is not None or value is None:
            return v
        out = {}
        for k, x in v.items():
            try:
                out[k] = value(x)
            except _Mismatch as exc:
                raise _inside(exc, k, x, desc) from None
        return out
    return check


def compile_type(tp: Any) -> tuple[type | None, Check | None, str]:
    """(the exact type a value must have, else a check that returns the value to keep, and
    the type as the docs and errors say it); (None, None, "any") for `Any`."""
    if tp is Any:
        return None, None, "any"
    if tp in (str, bytes, bool, int):
        return tp, None, _WIRE_NAMES[tp]
    if tp is float:
        return None, _float, "float"
    if isinstance(tp, type) and issubclass(tp, Record):
        return None, tp._from_map, tp.__name__
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        desc = "one of " + ", ".join(f'"{a}"' for a in args)
        return None, _literal(frozenset(args), desc), desc
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        exact, check, desc = compile_type(next(a for a in args if a is not type(None)))
        if exact is not None:
            check = _exact(exact)
        return None, None if check is None else _optional(check), f"{desc} or nil"
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is ...):
        exact, check, desc = compile_type(args[0]) if args else (None, None, "any")
        return None, _array(check, exact, desc, origin), \
            "array" if desc == "any" else f"array of {desc}"
    if origin is dict and args and args[0] is str:
        exact, check, desc = compile_type(args[1])
        return None, _map(check, exact, desc), \
            "map" if desc == "any" else f"map of str to {desc}"
    raise TypeError(f"no wire form for {tp!r}")


class Field:
    """One field of a record as the codec and the docs see it."""

    __slots__ = ("check", "default", "desc", "doc", "empty", "exact", "factory", "name",
                 "nested", "omit")

    def __init__(self, f: dataclasses.Field[Any], tp: Any) -> None:
        self.name = f.name
        self.exact, self.check, self.desc = compile_type(tp)
        self.default: Any = f.default
        self.factory: Callable[[], Any] | None = \
            None if f.default_factory is dataclasses.MISSING else f.default_factory
        self.empty = self.factory() if self.factory is not None else self.default
        self.omit = bool(f.metadata.get("omit"))  # left out of the map while at its default
        self.doc = str(f.metadata.get("doc", ""))
        self.nested = _nested(tp)

    @property
    def required(self) -> bool:
        return self.factory is None and self.default is _REQUIRED


def _nested(tp: Any) -> str:
    """How a value holds records, for encoding: "" none, "one", "map" (values)."""
    if isinstance(tp, type) and issubclass(tp, Record):
        return "one"
    if get_origin(tp) is dict:
        value = get_args(tp)[1]
        if isinstance(value, type) and issubclass(value, Record):
            return "map"
    return ""


class Record:
    """A frozen dataclass that travels as a msgpack map of its fields.

    Decoding builds the instance without calling `__init__` (setting its slots directly is
    half the cost), so a record has no `__post_init__`; checks across fields go in
    `_validate`."""

    __slots__ = ()
    _fields: ClassVar[tuple[Field, ...]]
    _decoding: ClassVar[tuple[tuple[Any, ...], ...]]
    _encoding: ClassVar[tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]],
                              tuple[tuple[Any, ...], ...]]]

    @classmethod
    def fields(cls) -> tuple[Field, ...]:
        """The fields, read from the annotations on first use (they may name later classes)."""
        found: tuple[Field, ...] | None = cls.__dict__.get("_fields")
        if found is None:
            if hasattr(cls, "__post_init__"):
                raise TypeError(f"{cls.__name__}: a wire record checks fields in _validate, "
                                "not __post_init__ (decoding does not call __init__)")
            hints = get_type_hints(cls)
            found = tuple(Field(f, hints[f.name])
                          for f in dataclasses.fields(cls))  # type: ignore[arg-type]
            # flat tuples: the loops below unpack them instead of reading attributes
            cls._decoding = tuple((f.name, cls.__dict__[f.name].__set__, f.exact, f.check,
                                   f.desc, f.factory, f.default) for f in found)
            names = tuple(f.name for f in found)
            get = attrgetter(*names) if len(names) > 1 else lambda r: (getattr(r, names[0]),)
            cls._encoding = (names, get, tuple((f.name, f.omit, f.empty, f.nested)
                                               for f in found if f.omit or f.nested))
            cls._fields = found
        return found

    @classmethod
    def _from_map(cls, body: Any) -> Self:
        if type(body) is not dict:
            raise _Mismatch(f"must be a map, got {type_name(body)}")
        if "_decoding" not in cls.__dict__:
            cls.fields()
        record = _new(cls)
        get = body.get
        for name, put, exact, check, desc, factory, default in cls._decoding:
            v = get(name, _ABSENT)
            if v is _ABSENT:
                if factory is not None:
                    v = factory()
                elif default is _REQUIRED:
                    raise _Mismatch("is missing", name)
                else:
                    v = default
            elif exact is not None:
                if type(v) is not exact:
                    raise _Mismatch(f"must be {desc}, got {type_name(v)}", name)
            elif check is not None:
                try:
                    v = check(v)
                except _Mismatch as exc:
                    raise _inside(exc, name, v, desc) from None
            put(record, v)
        record._validate()
        return record

    def _validate(self) -> None:
        """Checks across fields after decoding; raise `field_error(reason, field)`."""

    def as_dict(self) -> dict[str, Any]:
        """The map as it travels (nested records as maps; fields marked `omit` left out
        while at their default)."""
        cls = type(self)
        if "_encoding" not in cls.__dict__:
            cls.fields()
        names, get, special = cls._encoding
        out: dict[str, Any] = dict(zip(names, get(self), strict=True))
        for name, omit, empty, nested in special:
            v = out[name]
            if omit and v == empty:
                del out[name]
            elif nested == "one":
                out[name] = v.as_dict()
            elif nested == "map":
                out[name] = {k: r.as_dict() for k, r in v.items()}
        return out


_new = object.__new__


class Message(Record):
    """A whole body: `encode()` wraps it in the envelope `{"v": VERSION, "k": KIND, "b": ...}`
    (what `nalar_common.envelope.Envelope` reads and writes), `decode()` checks all of it and
    raises only `DecodeError`. A reader takes its own version and older ones; bump `VERSION`
    only for a change older readers cannot take (fields are added with defaults instead)."""

    __slots__ = ()
    KIND: ClassVar[str]
    VERSION: ClassVar[int]

    def encode(self) -> bytes:
        return pack({"v": self.VERSION, "k": self.KIND, "b": self.as_dict()})

    @classmethod
    def decode(cls, data: bytes) -> Self:
        return cls.from_body(body_of(data, cls.KIND, cls.VERSION))

    @classmethod
    def from_body(cls, body: Any) -> Self:
        """The message from a body already unpacked (`Envelope.decode(...).body`)."""
        try:
            return cls._from_map(body)
        except _Mismatch as exc:
            kind = cls.KIND
            if not exc.path:
                raise DecodeError(f"{kind} message: body {exc.reason}", kind=kind) from None
            raise DecodeError(f"{kind} message: field {exc.path!r} {exc.reason}", kind=kind,
                              field=exc.path) from None


def body_of(data: bytes, kind: str, version: int) -> Any:
    """The body of an envelope of `kind` no newer than `version`, else `DecodeError`."""
    try:
        raw = unpack(data)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"{kind} message is not msgpack: {exc}", kind=kind) from None
    if type(raw) is not dict:
        raise DecodeError(f"{kind} message is not an envelope map but {type_name(raw)}",
                          kind=kind)
    got = raw.get("k")
    if got != kind:
        raise DecodeError(f"expected a {kind!r} message, got {got!r:.100}", kind=kind,
                          field="k")
    v = raw.get("v")
    if type(v) is not int:
        raise DecodeError(f"{kind} message has no integer version (got {type_name(v)})",
                          kind=kind, field="v")
    if v > version:
        raise DecodeError(f"{kind} message version {v} is newer than this reader's "
                          f"{version}", kind=kind, field="v", details={"version": v})
    return raw.get("b", {})


def field_error(reason: str, field: str) -> Exception:
    """For `_validate`: a cross-field check that failed on `field`."""
    return _Mismatch(reason, field)
