"""`FutureKey(run, future)`: one future of one run, and every name built from the pair (its
subject on the futures stream, the message ids of its call and result, its operation id),
in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nalar_common.subjects import Headers as H
from nalar_common.subjects import Names


@dataclass(frozen=True, slots=True)
class FutureKey:
    run: str
    future: str

    def __str__(self) -> str:
        """`<run>.<future>`: how held calls are keyed, and the result's message id."""
        return f"{self.run}.{self.future}"

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> FutureKey:
        """The key a call's or result's headers name."""
        return cls(headers.get(H.RUN, ""), headers.get(H.FUTURE, ""))

    def subject(self, names: Names) -> str:
        """Where its result is stored (`NALAR_FUTURES`, one message per subject)."""
        return names.future(self.run, self.future)

    @property
    def result_msg_id(self) -> str:
        """The result's message id: JetStream stores one result per future."""
        return str(self)

    def call_msg_id(self, hop: int, attempt: int) -> str:
        """A call's message id: a republished call (a move, a retry) needs a new one, since
        JetStream drops repeats of an id."""
        return f"{self}.c{hop}.a{attempt}"

    def op_id(self, name: str = "") -> str:
        """An operation of this call (a managed-state commit, a `once` block): the same on
        every attempt, so a repeat is recognised."""
        return f"{self}.{name}" if name else str(self)
