"""A resolved future (kind `result`, on `nalar.fut.<run>.<future>`, stream `NALAR_FUTURES`),
written once by whoever finished the call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from nalar_common.errors import NalarError
from nalar_common.wire.record import Message, field_error, meaning


@dataclass(frozen=True, slots=True, kw_only=True)
class Result(Message):
    """`status` `ok` with a `value`, or `error` with an `error` in wire form."""

    KIND: ClassVar[str] = "result"
    VERSION: ClassVar[int] = 1

    executor: str = field(default="", metadata=meaning(
        "instance id, host id, or `lc:<node>` when a controller failed the call"))
    timings: dict[str, float] = field(default_factory=dict, metadata=meaning(
        "unix s: `created`, `dispatched`, `started`, `finished`; `{}` when a controller "
        "failed it"))
    usage: dict[str, Any] = field(default_factory=dict, metadata=meaning(
        "what the call spent (LLM calls and tokens); left out when empty", omit=True))
    status: Literal["ok", "error"] = field(metadata=meaning("how the call ended"))
    value: Any = field(default=None, metadata=meaning(
        "`ok`: the return value (FutureRefs allowed); left out when nil", omit=True))
    error: dict[str, Any] | None = field(default=None, metadata=meaning(
        "`error`: `{code, message, retryable, details}`; left out when nil", omit=True))

    def _validate(self) -> None:
        if self.status == "error" and not self.error:
            raise field_error("is required when status is 'error'", "error")

    def unwrap(self) -> Any:
        """The value, or raise the error it resolved to as its typed `NalarError`."""
        if self.status == "ok":
            return self.value
        raise NalarError.from_wire(self.error or {})
