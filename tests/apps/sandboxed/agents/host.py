"""An agent that says which process serves it: tests/test_sandbox_e2e.py checks that the
agent host survived the code its sandboxed tool ran (same pid, still alive)."""

from __future__ import annotations

import os

import nalar


@nalar.agent
class HostInfo:
    def pid(self) -> int:
        """The host's process id."""
        return os.getpid()
