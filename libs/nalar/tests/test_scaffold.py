"""`nalar new`: the project it writes loads as an app, passes its own tests, runs in local mode
and is served by `nalar up`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from nalar.app import load_app
from nalar.cli.scaffold import PROJECT_EXISTS, create_project, register
from nalar_common.errors import Conflict
from nalar_common.subjects import Names
from nalar_common.testing import wait_until_sync

LAYOUT = {".gitignore", "README.md", "pytest.ini", "agents/assistant.py", "workflows/answer.py",
          "config/README.md", "config/nalar.env", "config/policy.yaml",
          "config/guardrails.yaml", "tests/test_answer.py"}


def _clean_env() -> dict[str, str]:
    """This session's environment without what pytest set for itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "my-app"
    files = create_project(target, name="My App")
    assert {p.relative_to(target).as_posix() for p in files} == LAYOUT
    return target


def test_layout_and_rendering(project: Path) -> None:
    found = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    assert found == LAYOUT
    for rel in LAYOUT:
        text = (project / rel).read_text()
        assert "{{" not in text and text.strip(), rel
    readme = (project / "README.md").read_text()
    assert readme.startswith("# My App\n")
    assert "nalar up --app ." in readme and "nalar run --local . answer" in readme
    assert "/v1/workflows/answer/runs" in readme and "python -m pytest tests" in readme


def test_name_defaults_to_the_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()  # an empty directory is fine
    create_project(tmp_path / "empty")
    assert (tmp_path / "empty" / "README.md").read_text().startswith("# empty\n")


def test_loads_as_an_app(project: Path) -> None:
    app = load_app(project)
    assert set(app.agents) == {"Researcher", "Assistant"}
    assert set(app.workflows) == {"answer"}
    researcher = app.agents["Researcher"].methods
    assert not researcher["facts"].is_async and researcher["outline"].is_async
    assert app.agents["Assistant"].uses_state and not app.agents["Researcher"].uses_state


def test_its_own_tests_pass(project: Path) -> None:
    """As a user runs them, inside the project: its pytest.ini makes it pytest's rootdir, so
    this repository's pytest settings do not apply."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(project / "tests")], cwd=project, env=_clean_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout and "warning" not in out.stdout.lower()


def test_its_own_tests_pass_from_elsewhere(project: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(project / "tests" / "test_answer.py")], cwd=tmp_path,
                         env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_nalar_run_local(project: Path) -> None:
    body = {"input": {"question": "What is a future?"}, "session_id": "s1"}
    out = subprocess.run([sys.executable, "-m", "nalar", "run", "--local", str(project),
                          "answer", json.dumps(body), "--llm-time-scale", "0.01"],
                         env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["status"] == "succeeded"
    result = reply["result"]
    assert result["question"] == "What is a future?" and result["answer"]
    assert result["facts"] and result["earlier_questions"] == [] and result["turn"] == 1


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(Conflict) as info:
        create_project(target)
    assert info.value.error_code == PROJECT_EXISTS == "project_exists"
    assert info.value.details == {"path": str(target), "entries": ["notes.txt"]}
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # nothing written
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(Conflict) as not_a_dir:
        create_project(tmp_path / "a-file")
    assert not_a_dir.value.error_code == PROJECT_EXISTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nalar")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_new_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cli-app"
    args = _parser().parse_args(["new", str(target), "--name", "Cli App"])
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert f"Created Cli App in {target}" in out
    assert "Next steps:" in out and f"cd {target}" in out and "nalar up --app ." in out
    assert (target / "README.md").read_text().startswith("# Cli App\n")

    again = _parser().parse_args(["new", str(target)])
    assert again.fn(again) == 2  # exists and is not empty
    err = capsys.readouterr().err
    assert err.startswith("nalar new: ") and "is not empty" in err


@pytest.mark.e2e
def test_nalar_up_serves_it(project: Path, tmp_path: Path, nats_url: str, redis_url: str,
                            names: Names) -> None:
    from nalar_common.servers import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    env = {**_clean_env(), "NALAR_NATS_URL": nats_url, "NALAR_REDIS_URL": redis_url}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nalar", "up", "--app", str(project), "--nodes", "1",
             "--port", str(port), "--prefix", names.prefix, "--data-dir", str(tmp_path / "data"),
             "--key-file", str(tmp_path / "api-key"), "--llm-time-scale", "0.01"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:  # the gateway's readiness, as `nalar up` itself waits on
            assert proc.poll() is None, f"nalar up exited:\n{log.read_text()[-4000:]}"
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200

        wait_until_sync(ready, what="the scaffolded app's stack ready", timeout=90,
                        ignore=(httpx.HTTPError,))

        with httpx.Client(base_url=url, timeout=60) as http:
            runs = [http.post("/v1/workflows/answer/runs", params={"wait": 30},
                              json={"input": {"question": q}, "session_id": "alice"}).json()
                    for q in ("What is a future?", "Who resolves it?")]
        for run in runs:
            assert run["status"] == "succeeded", run
        first, second = (run["result"] for run in runs)
        assert first["question"] == "What is a future?" and first["answer"] and first["facts"]
        assert first["earlier_questions"] == [] and first["turn"] == 1
        assert second["earlier_questions"] == ["What is a future?"] and second["turn"] == 2
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    assert code == 0, log.read_text()[-4000:]
