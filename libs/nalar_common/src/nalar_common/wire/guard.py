"""Guardrail checks of LLM requests (on `nalar.guard.<node>`): an agent host asks its local
controller before each request of a guarded run (`GuardReserve`, answered by `GuardAnswer`)
and tells it afterwards what the request used (`GuardSettle`, no answer). Both requests
travel as kind `guard`; `decode_guard` tells them apart by the `settle` field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from nalar_common.errors import NalarError
from nalar_common.wire.record import Message, body_of, meaning


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardReserve(Message):
    """Room for one LLM request's worst case (`prompt_tokens` + `max_tokens`)."""

    KIND: ClassVar[str] = "guard"
    VERSION: ClassVar[int] = 1

    run: str = field(metadata=meaning("run id"))
    future: str = field(default="", metadata=meaning("the calling future"))
    session: str = field(default="", metadata=meaning("session id"))
    agent: str = field(default="", metadata=meaning("the calling agent"))
    method: str = field(default="", metadata=meaning("the calling method"))
    model: str = field(default="", metadata=meaning("the model (what prices are looked up by)"))
    prompt_tokens: int = field(metadata=meaning("the prompt in the engine's tokens"))
    max_tokens: int = field(metadata=meaning("the most output tokens the request may use"))
    again: bool = field(default=False, metadata=meaning(
        "asked again while paused: the controller journaled the pause already"))


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardSettle(Message):
    """What a reserved request used, counted instead of its worst case."""

    KIND: ClassVar[str] = "guard"
    VERSION: ClassVar[int] = 1

    settle: str = field(metadata=meaning("the reservation id `GuardAnswer.reservation` gave"))
    model: str = field(default="", metadata=meaning(
        "the model (informational: the reservation's model counts)"))
    prompt_tokens: int = field(metadata=meaning("prompt tokens used"))
    completion_tokens: int = field(metadata=meaning("output tokens used"))
    ok: bool = field(metadata=meaning("the request succeeded (a failed one counts nothing)"))


GuardRequest = GuardReserve | GuardSettle


def decode_guard(data: bytes) -> GuardRequest:
    """A `guard` message as the request it is (a body with `settle` settles)."""
    body = body_of(data, GuardReserve.KIND, GuardReserve.VERSION)
    if type(body) is dict and "settle" in body:
        return GuardSettle.from_body(body)
    return GuardReserve.from_body(body)


GuardAction = Literal["", "reject", "pause", "abort", "unavailable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardAnswer(Message):
    """The controller's answer to a `GuardReserve` (and `{ok: true}` to a settle that asked
    for one)."""

    KIND: ClassVar[str] = "guard_reply"
    VERSION: ClassVar[int] = 1

    ok: bool = field(metadata=meaning("the request may go ahead"))
    reservation: str = field(default="", metadata=meaning(
        "`ok`: the id to settle (`\"\"`: nothing reserved, nothing to settle)"))
    action: GuardAction = field(default="", metadata=meaning(
        "not `ok`: what the breached guardrail does (`pause`: ask again after the run's "
        "`resume`); `unavailable`: the controller could not check"))
    error: dict[str, Any] | None = field(default=None, metadata=meaning(
        "not `ok`: the error to raise, in wire form `{code, message, retryable, details}`"))
    details: dict[str, Any] = field(default_factory=dict, metadata=meaning(
        "not `ok`: the breach (`guardrail`, `scope`, `measure`, `max`, `value`, `action`), "
        "or `reason` when unavailable"))

    def exception(self) -> NalarError | None:
        """The error to raise (typed by its code), if the answer carries one."""
        return NalarError.from_wire(self.error) if self.error else None
