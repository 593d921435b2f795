"""Agent tools of the tool-use test app: a calculator, and a note-taker with side effects
(`idempotent=False`) that writes one line per execution, so tests count executions."""

from __future__ import annotations

import os
from pathlib import Path

import nalar


def executions_file() -> Path:
    """Where tools of this app write a line per execution (`TOOLUSE_DIR`, set by tests)."""
    return Path(os.environ.get("TOOLUSE_DIR", "/tmp")) / "executions.log"


def executed(line: str) -> None:
    with open(executions_file(), "a") as f:
        f.write(line + "\n")


@nalar.agent(concurrency=4)
class Calculator:
    def add(self, a: float, b: float) -> float:
        """Add two numbers."""
        executed(f"add {a} {b}")
        return a + b

    @nalar.tool(idempotent=False)
    def note(self, text: str) -> str:
        """Write a note down (once: it is not idempotent)."""
        executed(f"note {text}")
        return f"noted: {text}"
