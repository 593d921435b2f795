"""A coding agent loop whose only tool is the code sandbox (`nalar.sandbox.python`): the
e2e test (tests/test_sandbox_e2e.py) scripts its simulated model to propose code that
tries to escape, and reads what the tool answered from the loop's transcript."""

from __future__ import annotations

from typing import Any

import nalar
import nalar.sandbox
from agents.host import HostInfo

coder = nalar.AgentLoop(
    "coder", instructions="Answer by writing Python and running it with the python tool.",
    tools=[nalar.sandbox.python], max_turns=8)


@nalar.workflow
async def transcript(question: str) -> dict[str, Any]:
    """Run the coder and return what its model saw, with the outcome."""
    messages: list[dict[str, Any]] = []
    try:
        output = await coder.run(question, transcript=messages)
    except nalar.NalarError as exc:
        return {"error": exc.error_code, "messages": messages}
    return {"output": output, "messages": messages}


@nalar.workflow
async def host_pid() -> int:
    """The pid of the agent host that serves `HostInfo`."""
    pid: int = await nalar.stub(HostInfo).pid()
    return pid
