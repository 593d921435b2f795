"""An agent that calls another through its generated stub, imported at module level."""

from __future__ import annotations

import nalar
from stubs.typed import Typed


@nalar.agent
class Caller:
    def double_sum(self, a: int, b: int) -> int:
        typed = Typed()
        return typed.add(typed.add(a, b), typed.add(a, b)).value(timeout=30)

    def loose(self, value, label="x"):  # unannotated on purpose: its stub takes Any
        return value, label
