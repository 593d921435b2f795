"""A call handed to an agent host (`dispatch`, on `nalar.exec.<host>`) and its end (`done`,
headers only, on `nalar.done.<node>`): the per-call hot path between controller and host."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast, get_args

from nalar_common.subjects import Headers as H
from nalar_common.wire.record import DecodeError, Message, Record, meaning


@dataclass(frozen=True, slots=True, kw_only=True)
class DepResult(Record):
    """A dependency's stored result, carried in the dispatch so the host never reads it
    back (the values of `Dispatch.deps`)."""

    data: bytes = field(metadata=meaning(
        "the `result` envelope exactly as stored in `NALAR_FUTURES`; empty when the "
        "dependencies together did not fit the message: the host reads it from the stream"))
    headers: dict[str, str] = field(default_factory=dict, metadata=meaning(
        "its headers as stored"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch(Message):
    """One call sent to the host that must run it; the host answers with a `Done`."""

    KIND: ClassVar[str] = "dispatch"
    VERSION: ClassVar[int] = 1

    call: bytes = field(metadata=meaning(
        "the `call` envelope exactly as stored in `NALAR_CALLS`"))
    headers: dict[str, str] = field(metadata=meaning(
        "the call's headers, with the controller's `Nalar-Policy-Rev`"))
    instance: str = field(metadata=meaning("instance id that must run it"))
    deps: dict[str, DepResult] = field(default_factory=dict, metadata=meaning(
        "future id → its stored result, for every dependency"))
    dispatched_at: float = field(default=0.0, metadata=meaning("unix s"))
    token: str = field(metadata=meaning(
        "`<node>:<n>`, names this dispatch; echoed in `done` as `Nalar-Dispatch`"))
    guard: bool = field(default=False, metadata=meaning(
        "guardrails bind the run: the host asks before each LLM request"))
    replay_of: str = field(default="", metadata=meaning(
        "the original run when this run is a replay (its host serves the original's "
        "matching LLM answers); `\"\"` otherwise"))
    revisions: dict[str, str] = field(default_factory=dict, metadata=meaning(
        "`access` (policy.yaml) and `guardrails` (guardrails.yaml) revisions in force "
        "(recorded in `future_resolved`)"))


DoneStatus = Literal["ok", "error", "waiting", "retry"]

VERSION_HEADER = "Nalar-Version"
"""Version of a headers-only message (`done`); absent means 1, so version 1 never sends it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    """An agent host tells its controller a dispatch is over (`encode()` gives the headers,
    `decode()` reads them). `retry`: no result was published and the controller runs the call
    again after `retry_after` s as its next attempt; `waiting`: a driver left to wait for a
    signal."""

    KIND: ClassVar[str] = "done"
    VERSION: ClassVar[int] = 1

    run: str = field(metadata=meaning("run id", header=H.RUN))
    future: str = field(metadata=meaning("future id", header=H.FUTURE))
    dispatch: str = field(metadata=meaning(
        "the dispatch's token: a `done` for another dispatch of the call is stale",
        header=H.DISPATCH))
    status: DoneStatus = field(metadata=meaning("how it ended", header=H.STATUS))
    instance: str = field(default="", metadata=meaning(
        "instance id that ran it (host id when no instance did)", header=H.INSTANCE))
    retry_after: float | None = field(default=None, metadata=meaning(
        "seconds before the next attempt (status `retry`), 3 decimals",
        header=H.RETRY_AFTER))
    tokens: int | None = field(default=None, metadata=meaning(
        "LLM tokens the call used (prompt + output), when it used the LLM", header=H.TOKENS))
    context_tokens: int | None = field(default=None, metadata=meaning(
        "prompt + output of its last LLM request: the KV context it leaves",
        header=H.CONTEXT_TOKENS))

    def encode(self) -> dict[str, str]:
        """The headers of the (empty) `done` message."""
        out = {H.RUN: self.run, H.FUTURE: self.future, H.INSTANCE: self.instance,
               H.STATUS: self.status, H.DISPATCH: self.dispatch}
        if self.retry_after is not None:
            out[H.RETRY_AFTER] = f"{self.retry_after:.3f}"
        if self.tokens is not None:
            out[H.TOKENS] = str(self.tokens)
        if self.context_tokens is not None:
            out[H.CONTEXT_TOKENS] = str(self.context_tokens)
        if self.VERSION != 1:
            out[VERSION_HEADER] = str(self.VERSION)
        return out

    @classmethod
    def decode(cls, headers: Mapping[str, str] | None) -> Done:
        """From a `done` message's headers; `DecodeError` names the header that is missing
        or not what it should be."""
        h: Mapping[str, Any] = headers if headers is not None else {}
        v = _number(h, VERSION_HEADER, int)
        if v is not None and v > cls.VERSION:
            raise DecodeError(f"done message version {v} is newer than this reader's "
                              f"{cls.VERSION}", kind="done", field=VERSION_HEADER)
        run, future, dispatch = _id(h, H.RUN), _id(h, H.FUTURE), _id(h, H.DISPATCH)
        status = h.get(H.STATUS)
        if status not in _STATUSES:
            raise _header_error(H.STATUS, status, "one of " + ", ".join(_STATUSES))
        instance = h.get(H.INSTANCE, "")
        if type(instance) is not str:
            raise _header_error(H.INSTANCE, instance, "str")
        return cls(run=run, future=future, dispatch=dispatch,
                   status=cast(DoneStatus, status), instance=instance,
                   retry_after=_number(h, H.RETRY_AFTER, float),
                   tokens=_number(h, H.TOKENS, int),
                   context_tokens=_number(h, H.CONTEXT_TOKENS, int))


_STATUSES: tuple[str, ...] = get_args(DoneStatus)


def _header_error(name: str, value: Any, expected: str) -> DecodeError:
    got = "nothing" if value is None else f"{value!r}"[:100]
    return DecodeError(f"done message: header {name!r} must be {expected}, got {got}",
                       kind="done", field=name)


def _id(h: Mapping[str, Any], name: str) -> str:
    value = h.get(name)
    if type(value) is not str or not value:
        raise _header_error(name, value, "a non-empty str")
    return value


def _number(h: Mapping[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    """The header's number written as text (an int for `int`); None when it is absent."""
    value = h.get(name)
    if value is None:
        return None
    try:
        if type(value) is not str:
            raise ValueError
        return kind(value)
    except ValueError:
        raise _header_error(name, value, f"{kind.__name__} as text") from None
