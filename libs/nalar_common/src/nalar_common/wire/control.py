"""Provisioning and reconciliation between a local controller and one of its agent hosts
(request/reply on `nalar.ctl.<host>`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from nalar_common.wire.record import Message, field_error, meaning

ControlOp = Literal["assign", "release", "running"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlRequest(Message):
    """`assign` starts an instance of `agent` on the host, `release` stops `instance` (it
    finishes what it runs first), `running` asks which of `tokens` (dispatches) run there.
    Build one with `ControlRequest.assign(agent)`, `.release(instance)`, `.running(tokens)`."""

    KIND: ClassVar[str] = "control"
    VERSION: ClassVar[int] = 1

    op: ControlOp = field(metadata=meaning("what to do"))
    agent: str = field(default="", metadata=meaning("`assign`: the agent to start"))
    instance: str = field(default="", metadata=meaning("`release`: the instance to stop"))
    tokens: tuple[str, ...] = field(default=(), metadata=meaning(
        "`running`: dispatch tokens the controller has not heard back about"))

    @classmethod
    def assign(cls, agent: str) -> ControlRequest:
        return cls(op="assign", agent=agent)

    @classmethod
    def release(cls, instance: str) -> ControlRequest:
        return cls(op="release", instance=instance)

    @classmethod
    def running(cls, tokens: list[str] | tuple[str, ...]) -> ControlRequest:
        return cls(op="running", tokens=tuple(tokens))

    def _validate(self) -> None:
        if self.op == "assign" and not self.agent:
            raise field_error("is required for op 'assign'", "agent")
        if self.op == "release" and not self.instance:
            raise field_error("is required for op 'release'", "instance")


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlReply(Message):
    """What the host did: `ok` and a `status`, or `error`; `running` answers op `running`."""

    KIND: ClassVar[str] = "control_reply"
    VERSION: ClassVar[int] = 1

    ok: bool = field(metadata=meaning("it did (or had already done) what was asked"))
    status: str = field(default="", metadata=meaning(
        "`starting`, `already here`, `releasing`, `already releasing`"))
    error: str = field(default="", metadata=meaning("why not, when not `ok`"))
    running: tuple[str, ...] = field(default=(), metadata=meaning(
        "`running`: those of the asked tokens that run on the host"))
    agent: str = field(default="", metadata=meaning("`assign`: the agent"))
    instance: str = field(default="", metadata=meaning("`release`: the instance"))
    startup_s: float | None = field(default=None, metadata=meaning(
        "`assign` of a new instance: seconds until it serves (its engine loads)"))
