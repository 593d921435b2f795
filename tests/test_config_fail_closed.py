"""Authorization and guardrails fail closed at start: the gateway and a local controller given
a missing, empty, cut-off or invalid `policy.yaml` or `guardrails.yaml` refuse to start with
one line naming the file and the line; only `NALAR_AUTH_POLICY=none` / `NALAR_GUARDRAILS=none`
turn them off. (Run time: a bad edit or a deleted file keeps the rules in force, in
libs/nalar_common/tests/test_authz.py and test_guardrails.py, and end to end in
tests/test_auth_e2e.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nalar_common.servers import free_port

GOOD_POLICY = "rules:\n  - {match: {}, access: all}\n"
GOOD_LIMITS = "limits: []\n"
CASES = {  # file text (None: no file) -> (line named, what the message says)
    "missing": (None, None, "cannot be read"),
    "empty": ("", 1, "empty"),
    "comments only": ("# rules go here\n", 1, "no settings"),
    "cut off": ("rules:\n  - match: {role: admin}\n    access: [a, b\n", 4, "not valid YAML"),
}


def start(module: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a service that should stop before it connects anywhere (servers that do not
    exist: a service that got past its config would hang retrying, and time out)."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("NALAR_")},
            "NALAR_NATS_URL": "nats://127.0.0.1:1", "NALAR_REDIS_URL": "redis://127.0.0.1:1/0",
            "NALAR_GATEWAY_PORT": str(free_port()), "NALAR_GATEWAY_APP": str(
                Path(__file__).parent / "apps" / "basic"),
            "NALAR_AUTH_POLICY_FILE": str(tmp / "policy.yaml"),
            "NALAR_GUARDRAILS_FILE": str(tmp / "guardrails.yaml"), **env}
    return subprocess.run([sys.executable, "-m", module], env=full, capture_output=True,
                          text=True, timeout=60)


def refused(out: subprocess.CompletedProcess[str], path: Path, line: int | None,
            why: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refusing to start" in out.stderr and str(path) in out.stderr, out.stderr
    assert why in out.stderr and "Traceback" not in out.stderr, out.stderr
    if line is not None:
        assert f"line {line}" in out.stderr, out.stderr


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("module", ["nalar_gateway", "nalar_local_controller"])
def test_a_bad_policy_file_stops_the_service(module: str, case: str, tmp_path: Path) -> None:
    text, line, why = CASES[case]
    policy = tmp_path / "policy.yaml"
    if text is not None:
        policy.write_text(text)
    (tmp_path / "guardrails.yaml").write_text(GOOD_LIMITS)
    refused(start(module, tmp_path), policy, line, why)


def test_a_policy_with_an_invalid_rule_names_its_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - match: {role: admin}\n    access: all\n"
                      "  - match: {}\n    acess: [hello]\n")
    refused(start("nalar_gateway", tmp_path, NALAR_GUARDRAILS="none"), policy, 4,
            "rule 2: unknown keys ['acess']")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_guardrails_stop_the_local_controller(case: str, tmp_path: Path) -> None:
    text, line, why = CASES[case]
    limits = tmp_path / "guardrails.yaml"
    if text is not None:
        limits.write_text(text.replace("rules", "limits"))
    (tmp_path / "policy.yaml").write_text(GOOD_POLICY)
    refused(start("nalar_local_controller", tmp_path), limits, line, why)


def test_a_mode_other_than_file_or_none_is_refused(tmp_path: Path) -> None:
    out = start("nalar_local_controller", tmp_path, NALAR_AUTH_POLICY="off")
    assert out.returncode == 2 and "NALAR_AUTH_POLICY is `file` or `none`" in out.stderr
