"""Values by reference: an argument or result too large for a message is kept in the values
bucket (a NATS Object Store) and travels as a `ValueRef` (its URI, size, digest and kind), with
the header `Nalar-Value-Ref` on the call or result that carries it.

Writers: `publish_result` (a result), `Runtime` (a call's arguments), the agent-graph records.
Readers resolve references where user code would see the value (`Future.value()`/`await`, the
host before it calls a method), so code never sees a `ValueRef`; whatever only passes a value
along (controllers, a driver handing a future to the next call, a replay's journal answers)
moves the small reference. Objects live as long as the run's journal (`runs_max_age_s`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from nalar_common.bus import Bus
from nalar_common.envelope import FutureRef, ValueRef, pack, unpack, walk_refs
from nalar_common.errors import MalformedMessage, NalarError, NotFound, Unavailable
from nalar_common.logging import get_logger
from nalar_common.subjects import Headers as H

log = get_logger(__name__)

SCHEME = "nalar-value://"
HEADROOM = 64 * 1024
"""Room a message keeps for everything but its large values (headers, the envelope's other
fields, a dispatch's dependencies): values larger than the message limit less this go by
reference whatever the threshold."""
CHUNK_BYTES = 512 * 1024


def inline_limit(bus: Bus) -> int:
    """Largest packed value that travels inline: the configured threshold
    (`NALAR_NATS_VALUE_REF_BYTES`, 1 MiB by default), and never more than a message holds."""
    return max(1024, min(bus.settings.value_ref_bytes, bus.nc.max_payload - HEADROOM))


def carried(headers: Mapping[str, str] | None) -> bool:
    """Whether a call or result says it holds values by reference."""
    return bool(headers) and H.VALUE_REF in headers  # type: ignore[operator]


def header(refs: list[ValueRef]) -> dict[str, str]:
    """The `Nalar-Value-Ref` header naming `refs` (none when there are none)."""
    return {H.VALUE_REF: " ".join(dict.fromkeys(r.uri for r in refs))} if refs else {}


LARGE_HINT = 256 * 1024
_LOOK_AT = 2000


def maybe_large(value: Any) -> bool:
    """A cheap guess, without packing, whether `value` may pack to more than `LARGE_HINT`
    bytes: strings and bytes by their length, containers by what a look at their first
    `_LOOK_AT` items finds (more items than that: large). What it calls large is packed
    off the event loop."""
    budget, seen, stack = LARGE_HINT, 0, [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > _LOOK_AT:
            return True
        if isinstance(item, str | bytes | bytearray | memoryview):
            budget -= len(item)
        elif isinstance(item, dict):
            budget -= 8 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            budget -= 8 * len(item)
            stack.extend(item)
        else:
            budget -= 8
        if budget < 0:
            return True
    return False


def _bytes_of(value: Any) -> tuple[str, bytes]:
    if isinstance(value, bytes | bytearray):
        return "bytes", bytes(value) if isinstance(value, bytearray) else value
    if isinstance(value, str):
        return "str", value.encode("utf-8")
    return "msgpack", pack(value)


def _from_bytes(kind: str, data: bytearray) -> Any:
    if kind == "bytes":
        return bytes(data)
    if kind == "str":
        return data.decode("utf-8")
    if kind == "msgpack":
        return unpack(data)
    raise MalformedMessage(f"value reference of unknown kind {kind!r}")


def _unavailable(what: str, exc: BaseException) -> Unavailable:
    return Unavailable(f"{what}: {exc or type(exc).__name__}",
                       details={"type": type(exc).__name__})


class ValueStore:
    """The values bucket of one bus: `put` a value, `get` it back, `reader` for its chunks,
    `resolve` every reference in a structure. Packing, unpacking and copying large values
    happen in worker threads, never on the event loop (a host's heartbeats go on)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.bucket = bus.names.values_bucket
        self._store: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> ObjectStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    try:
                        self._store = await self.bus.values_bucket()
                    except NalarError:
                        raise
                    except Exception as exc:
                        raise _unavailable("the values bucket cannot be opened", exc) from exc
        return self._store

    async def put(self, run: str, future: str, role: str, value: Any) -> ValueRef:
        """Keep `value` and return its reference (packed in a worker thread)."""
        kind, data = await asyncio.to_thread(_bytes_of, value)
        return await self.put_bytes(run, future, role, kind, data)

    async def put_bytes(self, run: str, future: str, role: str, kind: str,
                        data: bytes) -> ValueRef:
        """Keep bytes of a value already packed as `kind`. Each put is a new object (never
        one another attempt of the same call could overwrite). A server that refuses it
        (full, or limits) is `Unavailable`."""
        store = await self._open()
        name = f"{run}/{future}/{role}/{uuid.uuid4().hex[:16]}"
        try:
            info = await store.put(name, data, meta=ObjectMeta(
                name=name, options=ObjectMetaOptions(max_chunk_size=self._chunk_bytes())))
        except Exception as exc:
            raise _unavailable(f"a value of {len(data)} bytes could not be kept", exc) from exc
        digest = info.digest if info.digest else _digest(data)
        log.info("value.stored", run_id=run, future_id=future, role=role, bytes=len(data))
        return ValueRef(f"{SCHEME}{self.bucket}/{name}", len(data), digest, kind)

    async def keep_if_large(self, run: str, future: str, role: str, value: Any,
                            limit: int) -> Any:
        """`value`, or its reference when it packs to more than `limit` bytes (packed in a
        worker thread: call it for values `maybe_large` says may be)."""
        kind, data = await asyncio.to_thread(_bytes_of, value)
        if len(data) <= limit:
            return value
        return await self.put_bytes(run, future, role, kind, data)

    def _chunk_bytes(self) -> int:
        return max(4096, min(CHUNK_BYTES, self.bus.nc.max_payload - 4096))

    async def reader(self, ref: ValueRef) -> AsyncIterator[bytes]:
        """The stored bytes of `ref`, chunk by chunk as they are read (nothing held), checked
        against the reference as they go: a short, long or changed value raises
        `MalformedMessage` (after the chunks before). Raises `NotFound` at once, before any
        chunk, when the value is not kept; `Unavailable` when NATS does not answer."""
        name = self._name(ref)
        store = await self._open()
        try:
            info = await store.get_info(name)
        except (NotFoundError, ObjectNotFoundError):
            raise NotFound(f"value {ref.uri} is not kept (any more): values live as long as "
                           "their run's journal", details={"uri": ref.uri}) from None
        except Exception as exc:
            raise _unavailable(f"value {ref.uri} cannot be read", exc) from exc
        if (info.size or 0) != ref.size or (info.digest and info.digest != ref.digest):
            raise MalformedMessage(f"value {ref.uri} does not match its reference",
                                   details={"uri": ref.uri})
        return self._chunks(ref, f"$O.{self.bucket}.C.{info.nuid}")

    async def _chunks(self, ref: ValueRef, subject: str) -> AsyncIterator[bytes]:
        at, sha = 0, hashlib.sha256()
        if ref.size:
            try:
                async for m in self.bus.iter_stream(f"OBJ_{self.bucket}", subject,
                                                    follow=False, timeout=30):
                    at += len(m.data)
                    if at > ref.size:
                        break
                    sha.update(m.data)
                    yield m.data
            except NalarError:
                raise
            except Exception as exc:
                raise _unavailable(f"value {ref.uri} cannot be read", exc) from exc
        if at != ref.size or _digest_of(sha) != ref.digest:
            raise MalformedMessage(f"value {ref.uri} does not match its reference ({at} of "
                                   f"{ref.size} bytes read)", details={"uri": ref.uri})

    async def get(self, ref: ValueRef) -> Any:
        """The value `ref` names, its size and digest checked."""
        chunks = await self.reader(ref)  # before allocating: a forged size is not trusted
        buf = bytearray(ref.size)
        view, at = memoryview(buf), 0
        try:
            async for chunk in chunks:
                view[at:at + len(chunk)] = chunk
                at += len(chunk)
        finally:
            view.release()
        return await asyncio.to_thread(_from_bytes, ref.kind, buf)

    async def resolve(self, value: Any) -> Any:
        """`value` with every `ValueRef` in it (nested in lists, tuples, dicts) replaced by
        the value it names."""
        if isinstance(value, ValueRef):
            return await self.resolve(await self.get(value))  # a kept list may hold more
        if isinstance(value, list):
            return [await self.resolve(v) for v in value]
        if isinstance(value, tuple):
            return tuple([await self.resolve(v) for v in value])
        if isinstance(value, dict):
            return {k: await self.resolve(v) for k, v in value.items()}
        return value

    def _name(self, ref: ValueRef) -> str:
        """The object name of a reference into this bucket; any other is refused."""
        prefix = f"{SCHEME}{self.bucket}/"
        if not ref.uri.startswith(prefix) or ref.size < 0:
            raise MalformedMessage(f"value reference {ref.uri!r} is not into this "
                                   f"deployment's values bucket {self.bucket!r}")
        return ref.uri[len(prefix):]

    async def externalize_args(self, run: str, future: str, args: list[Any],
                               kwargs: dict[str, Any],
                               limit: int) -> tuple[list[Any], dict[str, Any], list[ValueRef]]:
        """Keep by reference every argument larger than `limit` packed, then the largest
        others while the call would still not fit in `limit`; arguments holding futures
        stay inline (their controller must see them). Sized in a worker thread."""
        def sizes() -> list[tuple[int, str | int, Any]]:
            return [(len(pack(v)), i, v) for i, v in enumerate(args)] + \
                [(len(pack(v)), k, v) for k, v in kwargs.items()]

        sized = await asyncio.to_thread(sizes)
        total = sum(s for s, _, _ in sized)
        args, kwargs, refs = list(args), dict(kwargs), []
        for size, where, v in sorted(sized, key=lambda t: -t[0]):
            if (size <= limit and total <= limit) or walk_refs(v):
                continue
            ref = await self.put(run, future, f"arg-{where}", v)
            refs.append(ref)
            total -= size
            if isinstance(where, int):
                args[where] = ref
            else:
                kwargs[where] = ref
        return args, kwargs, refs


def store_for(bus: Bus) -> ValueStore:
    """The one `ValueStore` of a bus (kept on it)."""
    store: ValueStore | None = getattr(bus, "_values_store", None)
    if store is None:
        store = ValueStore(bus)
        bus._values_store = store  # type: ignore[attr-defined]
    return store


def href(run: str, future: str) -> str:
    """Where a future's value is read over HTTP (`GET`, the gateway streams it)."""
    return f"/v1/runs/{run}/futures/{future}/value"


def public(value: Any, run: str, future: str) -> Any:
    """The value of future `future` of `run` for a JSON reader: each `ValueRef` becomes
    `{"$value_ref": {uri, size_bytes, digest, kind}}`, with `href` (where it streams from)
    when the whole value is the reference."""
    out = _public(value)
    if isinstance(value, ValueRef):
        out["$value_ref"]["href"] = href(run, future)
    return out


def _public(value: Any) -> Any:
    if isinstance(value, ValueRef):
        return {"$value_ref": {"uri": value.uri, "size_bytes": value.size,
                               "digest": value.digest, "kind": value.kind}}
    if isinstance(value, list | tuple):
        return [_public(v) for v in value]
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    if isinstance(value, FutureRef):
        return {"$future": value.future}
    return value


def _digest_of(sha: Any) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(sha.digest()).decode()


def _digest(data: bytes) -> str:
    return _digest_of(hashlib.sha256(data))
