"""The code sandbox as an agent loop's tool on a real stack (tests/apps/sandboxed): the
scripted model proposes a fork bomb, a memory hog, network connections and writes outside
the scratch directory, then honest code; each failure comes back to the model as the
tool's result, the run succeeds, and the agent host that ran it all keeps serving.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from e2e_stack import ROOT, StackHandle, start_stack, stop_stack

pytestmark = pytest.mark.e2e

APP = ROOT / "tests" / "apps" / "sandboxed"
ESCAPED = APP / "escaped.txt"  # the app's own directory, on the host


def python(code: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "python", "arguments": {"code": code}}]}


def script(nats_port: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "escape": [
            python("import os\nwhile True:\n    os.fork()\n"),  # a fork bomb
            python("hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))\n"),
            python("import socket\n"
                   f"for address in [('127.0.0.1', {nats_port}), ('1.1.1.1', 443)]:\n"  # NATS, web
                   "    try:\n"
                   "        socket.create_connection(address, timeout=3)\n"
                   "        print('CONNECTED', address)\n"
                   "    except OSError as e:\n"
                   "        print(address, e)\n"),
            python(f"for path in ['/etc/escaped.txt', {str(ESCAPED)!r}]:\n"
                   "    try:\n"
                   "        open(path, 'w').write('escaped')\n"
                   "        print('WROTE', path)\n"
                   "    except OSError as e:\n"
                   "        print(path, e)\n"),
            python("print(6 * 7)"),
            {"text": "The answer is 42."}],
        "again": [python("import sys\nprint(sys.version_info[0] * 14)"),
                  {"text": "42 again"}],
    }


@pytest.fixture(scope="module")
def stack(nats_url: str, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    d = tmp_path_factory.mktemp("sandboxed")
    nats_port = urlparse(nats_url).port
    assert nats_port is not None
    handle = start_stack(APP, nats_url, redis_url, d / "nalar-up.log", nodes=1,
                         hosts_per_node=1, extra_env={
                             "NALAR_LLM_TIME_SCALE": "0.01",
                             "NALAR_LLM_SIM_PARAMS": json.dumps({"script": script(nats_port)})})
    yield handle
    stop_stack(handle)


def start(url: str, workflow: str, **inputs: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/workflows/{workflow}/runs", params={"wait": 60},
                   json={"input": inputs}, timeout=90)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def sandbox_processes() -> list[int]:
    """Host pids of uid 65534 (what bwrap and the sandboxed code run as under root)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            if re.search(r"^Uid:\s+65534\s", status, re.M):
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return re.search(r"^State:\s+Z", status, re.M) is None


def test_escapes_are_tool_results_and_the_host_keeps_serving(stack: StackHandle) -> None:
    assert os.geteuid() == 0, "the e2e stack runs as root in CI: processes are counted by uid"
    before = set(sandbox_processes())
    host = start(stack.url, "host_pid")
    assert host["status"] == "succeeded", host

    out = start(stack.url, "transcript", question="escape: try to get out, then compute")
    assert out["status"] == "succeeded", out
    result = out["result"]
    assert result["output"] == "The answer is 42.", result
    answers = [m["content"] for m in result["messages"] if m["role"] == "tool"]
    assert len(answers) == 5, answers
    bomb, hog, net, write, honest = answers

    assert bomb.startswith("exit code: 1\n"), bomb  # the bomb's first process gave up...
    assert "BlockingIOError: [Errno 11] Resource temporarily unavailable" in bomb
    assert "note: the sandbox may run at most 64 processes and threads" in bomb

    assert hog.startswith("exit code: 1\n") and "MemoryError" in hog, hog
    assert "note: memory is limited to 256 MiB" in hog

    assert "CONNECTED" not in net, net
    assert f"('127.0.0.1', {urlparse(stack.nats_url).port}) [Errno 111] Connection refused" \
        in net
    assert "('1.1.1.1', 443) [Errno 101] Network is unreachable" in net
    assert "note: the sandbox has no network" in net

    assert "WROTE" not in write, write
    assert "/etc/escaped.txt [Errno 30] Read-only file system" in write
    assert f"{ESCAPED} [Errno 2] No such file or directory" in write
    assert not ESCAPED.exists() and not Path("/etc/escaped.txt").exists()

    assert honest == "exit code: 0\nstdout:\n42"

    # each attempt was a `tools.python` future that succeeded (the failure is its result)
    rows = httpx.get(f"{stack.url}/v1/runs/{out['run_id']}/futures", timeout=30).json()
    calls = [f for f in rows["futures"] if f["agent"] == "tools"]
    assert [(f["method"], f["status"]) for f in calls] == [("python", "succeeded")] * 5

    # the host kept serving: the same process, alive, runs the next loop and call
    again = start(stack.url, "transcript", question="again please")
    assert again["status"] == "succeeded" and again["result"]["output"] == "42 again", again
    assert [m["content"] for m in again["result"]["messages"] if m["role"] == "tool"] == [
        "exit code: 0\nstdout:\n42"]
    after = start(stack.url, "host_pid")
    assert after["result"] == host["result"] and alive(host["result"]), (host, after)
    assert stack.proc.poll() is None
    assert set(sandbox_processes()) - before == set()
