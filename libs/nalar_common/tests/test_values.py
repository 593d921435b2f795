"""Values by reference (nalar_common.values) on a real nats-server: the wire form of a
reference, the threshold, results and arguments kept in the values bucket and read back,
digests, the bucket's retention, and references that must be refused."""

from __future__ import annotations

import msgpack
import pytest
from nalar_common.bus import Bus
from nalar_common.calls import publish_result
from nalar_common.digest import args_digest
from nalar_common.envelope import FutureRef, ValueRef, pack, unpack, walk_value_refs
from nalar_common.errors import MalformedMessage, NotFound
from nalar_common.futures import FutureResult
from nalar_common.subjects import Headers as H
from nalar_common.values import (
    LARGE_HINT,
    carried,
    inline_limit,
    maybe_large,
    public,
    store_for,
)

MIB = 1 << 20


def test_a_reference_round_trips_and_is_collected_when_packed() -> None:
    ref = ValueRef("nalar-value://b/r/1/result/x", 5 * MIB, "SHA-256=abc", "bytes")
    refs: list[ValueRef] = []
    data = pack({"a": [1, ref], "f": FutureRef("r", "1")}, refs)
    assert refs == [ref]
    back = unpack(data)
    assert back["a"][1] == ref and back["f"] == FutureRef("r", "1")
    assert walk_value_refs(back) == [ref]


def test_a_digest_of_references_follows_content_not_place() -> None:
    a = ValueRef("nalar-value://b/run1/1/result/x", 10, "SHA-256=abc", "str")
    b = ValueRef("nalar-value://b/run2/1/result/y", 10, "SHA-256=abc", "str")
    c = ValueRef("nalar-value://b/run2/1/result/y", 10, "SHA-256=def", "str")
    assert args_digest([a], {}) == args_digest([b], {}) != args_digest([c], {})


def test_public_form_names_where_to_read() -> None:
    ref = ValueRef("nalar-value://b/r/0/result/x", 3, "SHA-256=q", "msgpack")
    shown = {"uri": ref.uri, "size_bytes": 3, "digest": "SHA-256=q", "kind": "msgpack"}
    href = "/v1/runs/r/futures/0/value"
    assert public(ref, "r", "0") == {"$value_ref": {**shown, "href": href}}
    assert public({"x": [ref]}, "r", "0") == {"x": [{"$value_ref": shown}]}  # not the whole


def test_a_guess_of_size_without_packing() -> None:
    assert not maybe_large(None) and not maybe_large({"a": [1, 2, "x" * 100]})
    assert maybe_large(b"x" * (LARGE_HINT + 1)) and maybe_large(["y" * 1000] * 300)
    assert maybe_large(list(range(10_000)))  # more items than it looks at
    assert not maybe_large(list(range(1000)))


@pytest.mark.parametrize("fields", [[1, 2, 3, 4], ["u", -1, "d", "k"], ["u", "1", "d", "k"],
                                    ["u", 1, "d"]])
def test_a_malformed_reference_does_not_decode(fields: list[object]) -> None:
    data = msgpack.packb({"v": msgpack.ExtType(2, msgpack.packb(fields))})
    with pytest.raises(ValueError, match="value reference"):
        unpack(data)


async def test_the_limit_is_the_threshold_within_a_message(bus: Bus) -> None:
    assert inline_limit(bus) == bus.nc.max_payload - 64 * 1024  # 1 MiB threshold: capped
    bus.settings.value_ref_bytes = 4096
    assert inline_limit(bus) == 4096


@pytest.mark.parametrize("value", [b"\x00\xff" * (MIB // 2 + 7), "é" * MIB,
                                   {"rows": list(range(300_000)), "ok": True}])
async def test_a_large_result_is_kept_by_reference(bus: Bus, value: object) -> None:
    await bus.ensure_topology()
    headers = {H.RUN: "r1", H.FUTURE: "1", H.AGENT: "A", H.METHOD: "m", H.SESSION: "s"}
    assert await publish_result(bus, headers, value=value, executor="t")
    stored = await bus.direct_get_last(bus.names.futures_stream, bus.names.future("r1", "1"))
    assert stored is not None and len(stored.data) < 4096 and carried(stored.headers)
    ref = FutureResult("r1", "1", stored.data, stored.headers).value()
    assert isinstance(ref, ValueRef) and stored.headers[H.VALUE_REF] == ref.uri
    assert await store_for(bus).resolve([ref, {"k": ref}]) == [value, {"k": value}]


async def test_a_small_result_stays_inline(bus: Bus) -> None:
    await bus.ensure_topology()
    headers = {H.RUN: "r2", H.FUTURE: "1", H.AGENT: "A", H.METHOD: "m", H.SESSION: "s",
               H.VALUE_REF: "nalar-value://x/call-arg"}  # the call's references are not kept
    assert await publish_result(bus, headers, value="small", executor="t")
    stored = await bus.direct_get_last(bus.names.futures_stream, bus.names.future("r2", "1"))
    assert stored is not None and not carried(stored.headers)


async def test_arguments_go_by_reference_largest_first(bus: Bus) -> None:
    await bus.ensure_topology()
    store = store_for(bus)
    big, mid, small = "a" * (2 * MIB), b"b" * (600 * 1024), 7
    args, kwargs, refs = await store.externalize_args(
        "r3", "1", [big, small, FutureRef("r3", "0")], {"mid": mid, "also": mid}, MIB - 4096)
    assert isinstance(args[0], ValueRef) and args[1:] == [small, FutureRef("r3", "0")]
    assert sum(isinstance(v, ValueRef) for v in kwargs.values()) == 1  # then it fits
    assert len(refs) == 2 and await store.resolve([args, kwargs]) == [
        [big, small, FutureRef("r3", "0")], {"mid": mid, "also": mid}]


async def test_foreign_changed_and_missing_references_are_refused(bus: Bus) -> None:
    await bus.ensure_topology()
    store = store_for(bus)
    ref = await store.put("r4", "1", "result", b"x" * 5000)
    with pytest.raises(MalformedMessage, match="values bucket"):
        await store.get(ValueRef("nalar-value://other/r4/1/result/z", 5000, ref.digest,
                                 "bytes"))
    with pytest.raises(MalformedMessage, match="does not match"):
        await store.get(ValueRef(ref.uri, ref.size, "SHA-256=forged", "bytes"))
    with pytest.raises(NotFound, match="not kept"):
        await store.get(ValueRef(ref.uri + "gone", ref.size, ref.digest, "bytes"))
    with pytest.raises(NotFound):  # a forged size is never allocated before the lookup
        await store.get(ValueRef(ref.uri + "gone", 1 << 50, ref.digest, "bytes"))
    with pytest.raises(MalformedMessage, match="does not match"):
        await store.get(ValueRef(ref.uri, ref.size + 1, ref.digest, "bytes"))


async def test_a_value_the_server_refuses_fails_its_call(bus: Bus) -> None:
    """A full values bucket: the result is an `unavailable` error, never a host retrying
    for ever."""
    await bus.ensure_topology()
    info = await bus.js.stream_info(f"OBJ_{bus.names.values_bucket}")
    info.config.max_bytes = 64 * 1024
    await bus.js.update_stream(info.config)
    headers = {H.RUN: "r5", H.FUTURE: "1", H.AGENT: "A", H.METHOD: "m", H.SESSION: "s"}
    assert await publish_result(bus, headers, value=b"z" * (2 * MIB), executor="t")
    stored = await bus.direct_get_last(bus.names.futures_stream, bus.names.future("r5", "1"))
    assert stored is not None
    err = FutureResult("r5", "1", stored.data, stored.headers).error()
    assert err is not None and err.error_code == "unavailable" and err.retryable


async def test_the_values_bucket_keeps_values_as_long_as_what_names_them(bus: Bus) -> None:
    """The longer of the journal's and the results' retention, set again at each start."""
    bus.settings.runs_max_age_s, bus.settings.futures_max_age_s = 3600.0, 1800.0
    await bus.ensure_topology()
    info = await bus.js.stream_info(f"OBJ_{bus.names.values_bucket}")
    assert info.config.max_age == 3600
    bus.settings.futures_max_age_s = 7200.0
    await bus.ensure_topology()
    info = await bus.js.stream_info(f"OBJ_{bus.names.values_bucket}")
    assert info.config.max_age == 7200
