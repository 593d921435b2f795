"""A fuzz pass over the HTTP API: schemathesis generates requests from the gateway's own
OpenAPI document (valid and invalid bodies, paths, queries; hostile JSON mixed in by
tests/fuzz_hooks.py: nesting past the limit, NaN, infinities, long strings) against a real
stack with auth on; no request may get a 5xx, and no answer may show a server traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_stack import BASIC_APP, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def test_no_request_from_the_openapi_document_gets_a_5xx(nats_url: str, redis_url: str,
                                                         tmp_path: Path) -> None:
    # a short `?wait` cap: generated runs (naps of any length) must not hold requests open
    stack = start_stack(BASIC_APP, nats_url, redis_url, tmp_path / "nalar-up.log", nodes=1,
                        extra_env={"NALAR_AUTH_ANONYMOUS": "", "NALAR_GATEWAY_MAX_WAIT_S": "1"})
    try:
        key = subprocess.run([sys.executable, "-m", "nalar", "keys", "create", "--name",
                              "fuzz", "--role", "admin", "--redis-url", redis_url, "--prefix",
                              stack.prefix], capture_output=True, text=True, check=True,
                             timeout=60).stdout.strip()
        st = Path(sys.executable).with_name("schemathesis")
        proc = subprocess.run(
            [str(st), "run", f"{stack.url}/openapi.json", "--checks",
             "not_a_server_error,no_server_traceback",
             "--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--seed", "7",
             "--request-timeout", "20", "--workers", "1", "--max-time", "60",
             "--exclude-path-regex", "/events$",  # a stream that follows its run: no end
             "-H", f"Authorization: Bearer {key}", "--warnings", "off"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_hooks",
                 "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                os.environ.get("PYTHONPATH", "")])})
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]
        tested = re.search(r"Tested: (\d+)", out)
        assert "No issues found" in out and tested and int(tested.group(1)) >= 15, out[-3000:]
    finally:
        stop_stack(stack)
