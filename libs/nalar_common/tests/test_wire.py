"""Typed wire messages: round trips, the bytes today's readers and writers use, and every way
a message can be wrong raising the one `DecodeError`."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgpack
import pytest
from nalar_common import wire
from nalar_common.calls import encode_result
from nalar_common.envelope import Envelope, FutureRef, pack, unpack
from nalar_common.errors import GuardrailExceeded, MalformedMessage, NalarError, NotFound
from nalar_common.subjects import Headers as H
from nalar_common.wire import (
    ControlReply,
    ControlRequest,
    DecodeError,
    DepResult,
    Dispatch,
    Done,
    GuardAnswer,
    GuardReserve,
    GuardSettle,
    InstanceLoad,
    Message,
    Result,
    Telemetry,
    decode_guard,
)

LOAD = InstanceLoad(
    agent="Echo", host="n1-h1", queue=3, queued_tokens=120, queued_work_s=0.5, inflight=2,
    concurrency=16, service_s=0.01, p50_s=0.02, p99_s=0.2, sessions=2, oldest_age_s=1.5,
    oldest_session="s1", queued_sessions=["s1", "s2"],
    waiting=[{"session": "s1", "calls": 2, "wait_s": 0.1, "priority": 0, "age_s": 1.5,
              "context_tokens": 0, "running_here": False}],
    recent_sessions=[["s1", 1795258889.5]], engine={"engine": "simulated", "kv_usage": 0.1})

SAMPLES: list[Message] = [
    Dispatch(call=b"\x83call", headers={H.RUN: "r1", H.FUTURE: "3"}, instance="n1-h1.Echo",
             token="n1:7", deps={"1": DepResult(data=b"\x83res", headers={H.STATUS: "ok"})},
             dispatched_at=1795258889.25, guard=True, replay_of="r0",
             revisions={"access": "a1", "guardrails": "g1"}),
    Dispatch(call=b"", headers={}, instance="i", token="n1:1"),
    ControlRequest.assign("Echo"),
    ControlRequest.release("n1-h1.Echo"),
    ControlRequest.running(["n1:1", "n1:2"]),
    ControlReply(ok=True, status="starting", agent="Echo", startup_s=2.5),
    ControlReply(ok=True, running=("n1:1",)),
    ControlReply(ok=False, error="host n1-h1 has no free slot"),
    GuardReserve(run="r1", future="3", session="s1", agent="A", method="m", model="gpt",
                 prompt_tokens=100, max_tokens=64),
    GuardReserve(run="r1", prompt_tokens=0, max_tokens=0, again=True),
    GuardSettle(settle="abc", prompt_tokens=100, completion_tokens=12, ok=True),
    GuardAnswer(ok=True, reservation="abc"),
    GuardAnswer(ok=False, action="reject", error=GuardrailExceeded("over").to_wire(),
                details={"guardrail": "tokens", "max": 10, "value": 12}),
    Telemetry(node="n1", ts=1795258889.5, instances={"n1-h1.Echo": LOAD}, held=5, unplaced=1,
              waiting_deps=2, spawn_capacity=1, stats={"admitted": 9, "dispatched": 8}),
    Telemetry(node="n2", ts=0.0),
    Result(status="ok", value={"x": [1, FutureRef("r1", "2"), b"\x00", None]},
           executor="n1-h1.Echo", timings={"created": 1.0, "finished": 2.0}),
    Result(status="ok", value=None),
    Result(status="error", error=NotFound("gone").to_wire(), usage={"llm_calls": 1}),
]


def _id(m: Message) -> str:
    return type(m).__name__


@pytest.mark.parametrize("msg", SAMPLES, ids=_id)
def test_every_message_round_trips(msg: Message) -> None:
    data = msg.encode()
    assert type(msg).decode(data) == msg
    env = Envelope.decode(data, expect=type(msg).KIND)  # what untyped readers see
    assert env.v == type(msg).VERSION and env.body == unpack(pack(msg.as_dict()))
    assert type(msg).from_body(env.body) == msg


@pytest.mark.parametrize("msg", SAMPLES, ids=_id)
def test_messages_are_frozen(msg: Message) -> None:
    name = type(msg).fields()[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(msg, name, getattr(msg, name))


def test_dispatch_bytes_are_those_the_controller_writes_today() -> None:
    msg = SAMPLES[0]
    assert isinstance(msg, Dispatch)
    today = Envelope("dispatch", {
        "call": msg.call, "headers": msg.headers, "instance": msg.instance,
        "deps": {"1": {"data": b"\x83res", "headers": {H.STATUS: "ok"}}},
        "dispatched_at": msg.dispatched_at, "token": msg.token, "guard": True,
        "replay_of": "r0", "revisions": msg.revisions}).encode()
    assert msg.encode() == today


def test_result_bytes_are_those_encode_result_writes() -> None:
    timings = {"created": 1.0, "finished": 2.0}
    ok = Result(status="ok", value=[1, "x"], executor="e", timings=timings)
    assert ok.encode() == encode_result(value=[1, "x"], executor="e", timings=timings)[1]
    err = NotFound("gone")
    failed = Result(status="error", error=err.to_wire(), executor="e", usage={"llm_calls": 1})
    assert failed.encode() == encode_result(error=err, executor="e",
                                            usage={"llm_calls": 1})[1]
    with pytest.raises(NotFound, match="gone"):
        Result.decode(failed.encode()).unwrap()
    assert Result.decode(ok.encode()).unwrap() == [1, "x"]


def test_bodies_written_by_todays_code_decode() -> None:
    """What the controller, hosts and SDK publish now (untyped dicts) reads as the types."""
    assert ControlRequest.decode(Envelope("control", {"op": "assign", "agent": "A"}).encode()) \
        == ControlRequest.assign("A")
    assert ControlRequest.decode(Envelope("control", {
        "op": "running", "tokens": ["n1:1"]}).encode()).tokens == ("n1:1",)
    assert ControlReply.decode(Envelope("control_reply", {
        "ok": True, "instance": "i", "status": "releasing"}).encode()).status == "releasing"
    ask = {"run": "r", "future": "1", "session": "", "agent": "A", "method": "m",
           "model": "", "prompt_tokens": 5, "max_tokens": 64}
    assert decode_guard(Envelope("guard", ask).encode()) == GuardReserve(
        run="r", future="1", agent="A", method="m", prompt_tokens=5, max_tokens=64)
    settle = {"settle": "x", "prompt_tokens": 1, "completion_tokens": 2, "ok": False}
    assert decode_guard(Envelope("guard", settle).encode()) == GuardSettle(
        settle="x", prompt_tokens=1, completion_tokens=2, ok=False)
    refused = {"ok": False, "action": "unavailable", "error": None,
               "details": {"reason": "redis down"}}
    assert GuardAnswer.decode(Envelope("guard_reply", refused).encode()).exception() is None
    body = SAMPLES[13].as_dict()
    assert Telemetry.decode(Envelope("telemetry", body).encode()).as_dict() == body


def test_unknown_fields_are_ignored() -> None:
    """A newer writer of the same version adds fields with defaults; older readers skip them."""
    body = {**ControlRequest.assign("A").as_dict(), "colour": "blue"}
    assert ControlRequest.decode(Envelope("control", body).encode()) == \
        ControlRequest.assign("A")


def test_decode_guard_tells_reserve_from_settle() -> None:
    assert isinstance(decode_guard(SAMPLES[8].encode()), GuardReserve)
    assert isinstance(decode_guard(SAMPLES[10].encode()), GuardSettle)
    with pytest.raises(DecodeError, match="'settle' must be str"):
        decode_guard(Envelope("guard", {"settle": 1}).encode())


def test_guard_answer_raises_the_typed_error() -> None:
    answer = GuardAnswer.decode(SAMPLES[12].encode())
    err = answer.exception()
    assert isinstance(err, GuardrailExceeded) and err.message == "over"


# -- failures: one typed error, naming kind and field --------------------------------------
def _raw(msg: Message) -> dict[str, Any]:
    return {"v": type(msg).VERSION, "k": type(msg).KIND, "b": msg.as_dict()}


def _decode_raw(cls: type[Message], raw: Any) -> Message:
    return cls.decode(pack(raw))


def test_decode_error_is_a_malformed_message_that_survives_the_wire() -> None:
    with pytest.raises(DecodeError) as info:
        Dispatch.decode(Envelope("dispatch", {"headers": {}}).encode())
    err = info.value
    assert isinstance(err, MalformedMessage) and err.error_code == "malformed_message"
    assert (err.kind, err.field) == ("dispatch", "call")
    assert str(err) == "dispatch message: field 'call' is missing"
    back = NalarError.from_wire(err.to_wire())
    assert type(back) is MalformedMessage
    assert back.details == {"kind": "dispatch", "field": "call"}


@pytest.mark.parametrize("msg", SAMPLES, ids=_id)
def test_wrong_kind(msg: Message) -> None:
    raw = {**_raw(msg), "k": "something_else"}
    with pytest.raises(DecodeError, match=rf"expected a '{type(msg).KIND}' message") as info:
        _decode_raw(type(msg), raw)
    assert info.value.field == "k"


@pytest.mark.parametrize("msg", SAMPLES, ids=_id)
def test_every_required_field_missing(msg: Message) -> None:
    required = [f.name for f in type(msg).fields() if f.required]
    assert required or isinstance(msg, Result | Telemetry)
    for name in required:
        raw = _raw(msg)
        del raw["b"][name]
        with pytest.raises(DecodeError, match=f"{type(msg).KIND} message: field '{name}' "
                                              "is missing") as info:
            _decode_raw(type(msg), raw)
        assert (info.value.kind, info.value.field) == (type(msg).KIND, name)


@pytest.mark.parametrize("msg", SAMPLES, ids=_id)
def test_every_field_ill_typed(msg: Message) -> None:
    """A FutureRef fits no field but those of any type; each is named in the error."""
    for f in type(msg).fields():
        if f.desc == "any":
            continue
        raw = _raw(msg)
        raw["b"][f.name] = FutureRef("r", "f")
        with pytest.raises(DecodeError, match=rf"field '{f.name}' must be .*, got ") as info:
            _decode_raw(type(msg), raw)
        assert info.value.field == f.name


@pytest.mark.parametrize(("cls", "body", "field", "says"), [
    (GuardReserve, {"run": "r", "prompt_tokens": True, "max_tokens": 1}, "prompt_tokens",
     "must be int, got bool"),
    (GuardReserve, {"run": "r", "prompt_tokens": "5", "max_tokens": 1}, "prompt_tokens",
     "must be int, got str"),
    (GuardSettle, {"settle": "x", "prompt_tokens": 1, "completion_tokens": 1.5, "ok": True},
     "completion_tokens", "must be int, got float"),
    (GuardSettle, {"settle": "x", "prompt_tokens": 1, "completion_tokens": 1, "ok": 1},
     "ok", "must be bool, got int"),
    (Dispatch, {"call": "text", "headers": {}, "instance": "i", "token": "t"}, "call",
     "must be bin, got str"),
    (Dispatch, {"call": b"", "headers": {H.RUN: 1}, "instance": "i", "token": "t"},
     "headers.Nalar-Run", "must be str, got int"),
    (Dispatch, {"call": b"", "headers": {1: "x"}, "instance": "i", "token": "t"},
     "headers", "must have str keys"),
    (Dispatch, {"call": b"", "headers": {}, "instance": "i", "token": "t",
                "deps": {"3": {"headers": {}}}}, "deps.3.data", "is missing"),
    (Dispatch, {"call": b"", "headers": {}, "instance": "i", "token": "t",
                "deps": {"3": "x"}}, "deps.3", "must be a map, got str"),
    (Dispatch, {"call": b"", "headers": {}, "instance": "i", "token": "t",
                "replay_of": None}, "replay_of", "must be str, got nil"),
    (ControlRequest, {"op": "explode"}, "op", "must be one of \"assign\""),
    (ControlRequest, {"op": "assign"}, "agent", "is required for op 'assign'"),
    (ControlRequest, {"op": "release", "instance": ""}, "instance", "is required"),
    (ControlRequest, {"op": "running", "tokens": ["a", 2]}, "tokens.1", "must be str, got int"),
    (ControlReply, {"ok": True, "startup_s": "soon"}, "startup_s", "must be float or nil"),
    (GuardAnswer, {"ok": False, "action": "explode"}, "action", "must be one of"),
    (Telemetry, {"node": "n1", "ts": 1.0, "stats": {"admitted": 1.5}}, "stats.admitted",
     "must be int, got float"),
    (Telemetry, {"node": "n1", "ts": 1.0, "instances": {"i": {"agent": "A"}}},
     "instances.i.host", "is missing"),
    (Telemetry, {"node": "n1", "ts": 1.0, "instances": {"i": {**LOAD.as_dict(),
                                                              "waiting": [1]}}},
     "instances.i.waiting.0", "must be map, got int"),
    (Result, {"status": "error"}, "error", "is required when status is 'error'"),
    (Result, {"status": "ok", "timings": {"created": "now"}}, "timings.created",
     "must be float, got str"),
])
def test_ill_typed_fields_say_where(cls: type[Message], body: dict[str, Any], field: str,
                                    says: str) -> None:
    with pytest.raises(DecodeError) as info:
        cls.decode(pack({"v": 1, "k": cls.KIND, "b": body}))
    assert info.value.field == field
    assert says in str(info.value)
    assert str(info.value).startswith(f"{cls.KIND} message: field '{field}' ")


def test_ints_are_taken_for_floats() -> None:
    msg = Telemetry.decode(pack({"v": 1, "k": "telemetry", "b": {"node": "n", "ts": 5}}))
    assert msg.ts == 5.0 and type(msg.ts) is float


@pytest.mark.parametrize("msg", SAMPLES, ids=_id)
def test_a_newer_version_is_refused(msg: Message) -> None:
    raw = {**_raw(msg), "v": type(msg).VERSION + 1}
    with pytest.raises(DecodeError, match=r"version \d+ is newer than this reader's") as info:
        _decode_raw(type(msg), raw)
    assert info.value.field == "v"
    assert _decode_raw(type(msg), {**raw, "v": type(msg).VERSION}) == msg


GARBAGE: list[Any] = [
    b"", b"\xc1", b"\x93\x01\x02", b"junk", b"\xff" * 64, "not bytes", None, 3,
    msgpack.packb([1, 2]), msgpack.packb({"k": "dispatch"}),
    msgpack.packb({"v": "1", "k": "dispatch", "b": {}}),
    msgpack.packb({"v": 1, "k": "dispatch", "b": []}),
    msgpack.packb({"v": 1, "k": "dispatch", "b": None}),
    msgpack.packb({"v": 1, "k": 3, "b": {}}),
]


@pytest.mark.parametrize("cls", [type(m) for m in SAMPLES[::3]] + [Result],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_raises_decode_error(cls: type[Message], data: Any) -> None:
    with pytest.raises(DecodeError, match=cls.KIND):
        cls.decode(data)


@pytest.mark.parametrize("msg", SAMPLES, ids=_id)
def test_mangled_bytes_decode_or_raise_decode_error(msg: Message) -> None:
    """Truncations and byte flips (a seeded fuzz): the reader never raises anything else."""
    rng = random.Random(f"wire-{_id(msg)}")
    data = msg.encode()
    for _ in range(300):
        mangled = bytearray(data)
        if rng.random() < 0.3:
            mangled = mangled[:rng.randrange(len(mangled))]
        for _ in range(rng.randint(1, 4)):
            if mangled:
                mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        try:
            type(msg).decode(bytes(mangled))
        except DecodeError:
            pass


# -- done: headers only ------------------------------------------------------------------
DONE = Done(run="r1", future="3_1", dispatch="n1:7", status="ok", instance="n1-h1.Echo",
            tokens=150, context_tokens=90)


def test_done_round_trips_and_writes_todays_headers() -> None:
    assert DONE.encode() == {H.RUN: "r1", H.FUTURE: "3_1", H.INSTANCE: "n1-h1.Echo",
                             H.STATUS: "ok", H.DISPATCH: "n1:7", H.TOKENS: "150",
                             H.CONTEXT_TOKENS: "90"}
    assert Done.decode(DONE.encode()) == DONE
    retry = Done(run="r", future="1", dispatch="n1:1", status="retry", retry_after=1.5)
    assert retry.encode()[H.RETRY_AFTER] == "1.500"
    assert Done.decode(retry.encode()) == retry
    assert Done.decode({**retry.encode(), "Nalar-Other": "x"}) == retry


def test_done_header_names_are_its_documented_ones() -> None:
    declared = {f.metadata["header"] for f in dataclasses.fields(Done)}
    assert set(DONE.encode()) | {H.RETRY_AFTER} == declared


@pytest.mark.parametrize(("change", "header", "says"), [
    ({H.RUN: None}, H.RUN, "must be a non-empty str, got nothing"),
    ({H.FUTURE: ""}, H.FUTURE, "must be a non-empty str"),
    ({H.DISPATCH: None}, H.DISPATCH, "must be a non-empty str"),
    ({H.STATUS: "fine"}, H.STATUS, "must be one of ok, error, waiting, retry, got 'fine'"),
    ({H.STATUS: None}, H.STATUS, "got nothing"),
    ({H.TOKENS: "many"}, H.TOKENS, "must be int as text, got 'many'"),
    ({H.TOKENS: "1.5"}, H.TOKENS, "must be int as text"),
    ({H.RETRY_AFTER: "soon"}, H.RETRY_AFTER, "must be float as text"),
    ({wire.VERSION_HEADER: "2"}, wire.VERSION_HEADER, "version 2 is newer"),
    ({wire.VERSION_HEADER: "x"}, wire.VERSION_HEADER, "must be int as text"),
])
def test_done_failures_name_the_header(change: dict[str, str | None], header: str,
                                       says: str) -> None:
    headers = {k: v for k, v in {**DONE.encode(), **change}.items() if v is not None}
    with pytest.raises(DecodeError, match=says) as info:
        Done.decode(headers)
    assert (info.value.kind, info.value.field) == ("done", header)


def test_done_without_headers() -> None:
    with pytest.raises(DecodeError, match="Nalar-Run"):
        Done.decode(None)
    assert Done.decode({**DONE.encode(), wire.VERSION_HEADER: "1"}) == DONE


def test_public_names() -> None:
    assert sorted(wire.__all__) == sorted([
        "VERSION_HEADER", "ControlOp", "ControlReply", "ControlRequest", "DecodeError",
        "DepResult", "Dispatch", "Done", "DoneStatus", "GuardAction", "GuardAnswer",
        "GuardRequest", "GuardReserve", "GuardSettle", "InstanceLoad", "Message", "Record",
        "Result", "Telemetry", "decode_guard"])
    for name in wire.__all__:
        assert hasattr(wire, name)
