"""Workflows of the control-plane test app: one agent call each, or a burst of them."""

from __future__ import annotations

from typing import Any

import nalar
from agents.control import Chat, Code, Sticky, Worker

_AGENTS: dict[str, Any] = {"Worker": Worker, "Sticky": Sticky, "Chat": Chat, "Code": Code}


@nalar.workflow
def hold(agent: str, name: str) -> int:
    return int(nalar.stub(_AGENTS[agent]).hold(name).value(timeout=120))


@nalar.workflow
def bump() -> dict[str, int]:
    return nalar.stub(Worker).bump().value(timeout=120)  # type: ignore[no-any-return]


@nalar.workflow
def touch() -> int:
    return int(nalar.stub(Sticky).touch().value(timeout=120))


@nalar.workflow
def burst(agent: str, n: int, seconds: float) -> list[str]:
    stub = nalar.stub(_AGENTS[agent])
    calls = [stub.work(seconds) for _ in range(n)]
    return [c.value(timeout=300) for c in calls]
