"""The sandbox as tools of an agent loop: `AgentLoop("coder", tools=[nalar.sandbox.python])`.
Each becomes a method of the built-in `tools` agent (`tools.python`, `tools.shell`); the
model sees the first paragraph of the docstring. A failure of the code (an exception, a
limit, a timeout) is part of the text the model gets back, not an error of the call; only a
sandbox that cannot run at all (`SandboxUnavailable`) fails the call.

Other limits: write your own tool around `run_python(code, limits=Limits(...))`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from nalar.registry import tool
from nalar.sandbox.runner import run_python, run_shell

# the call's own timeout, past the sandbox's wall-time limit and its start: a backstop
TOOL_TIMEOUT_S = 60.0
F = TypeVar("F", bound=Callable[..., Any])


def _tool(fn: F) -> F:
    """`@nalar.tool(timeout=TOOL_TIMEOUT_S)`, typed (it is idempotent: nothing the code does
    outlives its sandbox, so a retry repeats no side effect)."""
    marked: F = tool(fn, timeout=TOOL_TIMEOUT_S)
    return marked


@_tool
async def python(code: str) -> str:
    """Run a Python 3 script in an isolated sandbox and get back its exit code, stdout and
    stderr (print what you want to see). Standard library only; no network; the working
    directory /scratch (also /tmp) is the only writable place and is wiped after every
    call, so nothing persists between calls. Limits: 10 s wall time, 5 s CPU, 256 MiB
    memory, 64 processes, 16 MiB per file, 64 KiB of output per stream.

    `code` is saved as /sandbox/main.py and run with `python3 -I -u` as uid 65534 (see
    docs/sandbox.md for what the sandbox does and does not stop)."""
    return (await run_python(code)).text()


@_tool
async def shell(command: str) -> str:
    """Run a bash script in an isolated sandbox and get back its exit code, stdout and
    stderr. The host's programs under /usr are there, read-only; no network; the working
    directory /scratch (also /tmp) is the only writable place and is wiped after every
    call, so nothing persists between calls. Limits: 10 s wall time, 5 s CPU, 256 MiB
    memory per process, 64 processes, 16 MiB per file, 64 KiB of output per stream.

    `command` is saved as /sandbox/main.sh and run with /bin/bash as uid 65534."""
    return (await run_shell(command)).text()
