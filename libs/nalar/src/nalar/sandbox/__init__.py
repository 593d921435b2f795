"""A sandbox for code an LLM wrote: Python or shell, run under bubblewrap (`bwrap`) in its
own user, pid, ipc, uts, cgroup and network namespaces, as an unprivileged uid, on a
read-only view of the host's /usr with one scratch directory writable, under rlimits (CPU
time, address space, processes, file size, open files) and a wall-time limit; killed as a
whole (its pid namespace) on timeout, an output flood or cancellation. docs/sandbox.md says
what each limit does and what the sandbox does not stop.

    result = await nalar.sandbox.run_python("print(6 * 7)")
    result.exit_code, result.stdout          # 0, "42\\n"
    nalar.AgentLoop("coder", tools=[nalar.sandbox.python, nalar.sandbox.shell])

Where bwrap is missing or cannot make namespaces, a run raises `SandboxUnavailable`; the
sandbox never falls back to running code without it.
"""

from nalar.sandbox.command import SandboxUnavailable
from nalar.sandbox.result import Limits, SandboxResult
from nalar.sandbox.runner import run_python, run_shell
from nalar.sandbox.tools import python, shell

__all__ = ["Limits", "SandboxResult", "SandboxUnavailable", "python", "run_python",
           "run_shell", "shell"]
