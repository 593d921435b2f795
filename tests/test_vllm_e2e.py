"""A real LLM engine under the whole stack: vLLM (CPU) serving SmolLM2-135M, started with
deploy/vllm/serve.sh, and `nalar up` whose agent hosts use it (`NALAR_LLM_BACKEND=openai`).

Opt-in: runs only with `NALAR_TEST_VLLM=1` and the environment built by `make vllm`
(`make test-vllm` does both); `.ci/run` runs it after the main suite. docs/vllm.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_stack import ROOT, StackHandle, start_stack, stop_stack
from nalar_common.servers import free_port
from nalar_common.testing import WaitTimeout, wait_until_sync

VLLM_VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
MODEL_DIR = Path(os.environ.get("VLLM_MODEL_DIR", ROOT / ".nalar" / "models" / "smollm2-135m"))
SERVE = ROOT / "deploy" / "vllm" / "serve.sh"
LLM_APP = ROOT / "tests" / "apps" / "llm"
MODEL = "smollm2"
START_TIMEOUT_S = 240
QUESTION = "What is the capital of France?"
TOOL_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")


def _skip_reason() -> str | None:
    if os.environ.get("NALAR_TEST_VLLM") != "1":
        return "vLLM tests are opt-in: NALAR_TEST_VLLM=1 (make test-vllm)"
    if not (VLLM_VENV / "bin" / "python").exists():
        return (f"!!! vLLM environment missing at {VLLM_VENV}: run `make vllm` "
                "(the real-engine test did NOT run) !!!")
    if not (MODEL_DIR / "config.json").exists() or not (MODEL_DIR / "model.safetensors").exists():
        return (f"!!! converted model missing at {MODEL_DIR}: run `make vllm` "
                "(the real-engine test did NOT run) !!!")
    return None


_REASON = _skip_reason()
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


class VLLMServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        """serve.sh stops the server and its engine processes on SIGTERM."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    log = tmp_path_factory.mktemp("vllm") / "vllm-server.log"
    port = free_port()
    env = {**os.environ, "VLLM_VENV": str(VLLM_VENV), "VLLM_MODEL_DIR": str(MODEL_DIR),
           "VLLM_START_TIMEOUT_S": str(START_TIMEOUT_S)}
    with open(log, "wb") as out:
        # own session: the teardown can take the whole group down if serve.sh hangs; serve.sh
        # also stops the server by itself if this process goes away
        # the model's tool calls parsed (agent loops); requests without tools are not
        # affected
        proc = subprocess.Popen([str(SERVE), "--port", str(port), *TOOL_FLAGS], env=env,
                                stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = VLLMServer(proc, port, log)
    started = time.monotonic()

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode} while starting:\n"
                        f"{server.tail()}")
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200

    try:
        try:
            wait_until_sync(healthy, what="the vLLM server healthy", timeout=START_TIMEOUT_S,
                            interval=1, ignore=(httpx.HTTPError,))
        except WaitTimeout:
            pytest.fail(f"vLLM server not healthy within {START_TIMEOUT_S} s:\n"
                        f"{server.tail()}")
        print(f"vLLM healthy after {time.monotonic() - started:.1f} s on port {port}")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def llm_stack(vllm_server: VLLMServer, nats_url: str, redis_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    log = tmp_path_factory.mktemp("llm-stack") / "nalar-up.log"
    handle = start_stack(LLM_APP, nats_url, redis_url, log, extra_env={
        "NALAR_LLM_BACKEND": "openai", "NALAR_LLM_BASE_URL": vllm_server.base_url,
        "NALAR_LLM_MODEL": MODEL, "NALAR_LLM_API_KEY": ""})
    yield handle
    stop_stack(handle)


def _stream_chat(base_url: str, messages: list[dict[str, str]],
                 max_tokens: int) -> tuple[str, dict[str, Any], float]:
    """A streamed chat completion with usage: (text, usage of the last chunk, TTFT s)."""
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    pieces: list[str] = []
    usage: dict[str, Any] = {}
    started = time.monotonic()
    ttft = 0.0
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read().decode()
        for line in r.iter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    ttft = ttft or time.monotonic() - started
                    pieces.append(choice["delta"]["content"])
    return "".join(pieces), usage, ttft


def test_vllm_answers_openai_chat_directly(vllm_server: VLLMServer) -> None:
    """The engine itself: a real answer with usage, plain and streamed."""
    r = httpx.post(f"{vllm_server.base_url}/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 16, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    text = body["choices"][0]["message"]["content"]
    assert "Paris" in text, (text, vllm_server.tail())
    assert body["usage"]["prompt_tokens"] > 0
    assert 0 < body["usage"]["completion_tokens"] <= 16

    streamed, usage, ttft = _stream_chat(vllm_server.base_url,
                                         [{"role": "user", "content": QUESTION}], 16)
    assert streamed == text  # temperature 0: the same answer
    assert usage["prompt_tokens"] == body["usage"]["prompt_tokens"]
    assert 0 < usage["completion_tokens"] <= 16
    assert ttft > 0


def test_vllm_reports_cached_prompt_tokens(vllm_server: VLLMServer) -> None:
    """Prefix caching with --enable-prompt-tokens-details: a repeated long prompt reports
    `prompt_tokens_details.cached_tokens` (whole KV blocks only, so the prompt spans several)."""
    system = " ".join(f"Rule {i}: answer briefly and politely, in plain English."
                      for i in range(40))
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": "Name one colour."}]
    _, first, _ = _stream_chat(vllm_server.base_url, messages, 4)
    _, second, _ = _stream_chat(vllm_server.base_url, messages, 4)
    assert first["prompt_tokens"] > 256, first
    assert second["prompt_tokens"] == first["prompt_tokens"]
    assert (first.get("prompt_tokens_details") or {}).get("cached_tokens", 0) == 0, first
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached <= second["prompt_tokens"], second


def test_workflow_runs_on_the_real_engine(llm_stack: StackHandle) -> None:
    """Gateway → driver → agent → `nalar.llm.chat` → vLLM, and back: a real completion, its
    usage on the result and on the agent's future."""
    with llm_stack.client() as http:
        r = http.post("/v1/workflows/ask/runs", params={"wait": 120},
                      json={"input": {"question": QUESTION, "max_tokens": 16}}, timeout=150)
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "succeeded", run
        futures = {f["future"]: f for f in
                   http.get(f"/v1/runs/{run['run_id']}/futures").json()["futures"]}
    result = run["result"]
    assert result["text"].strip(), result
    assert "Paris" in result["text"], result
    assert result["prompt_tokens"] > 0, result
    assert 0 < result["completion_tokens"] <= 16, result
    assert result["model"] == MODEL
    assert result["engine"].startswith("openai:")
    assert 0 < result["timings"]["ttft_s"] <= result["timings"]["total_s"]
    usage = futures["1"]["usage"]  # the Asker.ask call
    assert usage["llm_calls"] == 1
    assert usage["prompt_tokens"] == result["prompt_tokens"]
    assert usage["completion_tokens"] == result["completion_tokens"]


def test_session_reuses_the_engine_prefix_cache(llm_stack: StackHandle) -> None:
    """Two calls of one run (one session) with the same long prompt: the second one's
    prompt is served from vLLM's prefix cache, and `cached_tokens` says so."""
    question = " ".join(f"Fact {i}: the sky is blue on a clear day." for i in range(40))
    question += " What colour is the sky?"
    with llm_stack.client() as http:
        r = http.post("/v1/workflows/ask_twice/runs", params={"wait": 120},
                      json={"input": {"question": question, "max_tokens": 4}}, timeout=150)
        assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "succeeded", run
    first, second = run["result"]
    assert first["prompt_tokens"] > 256 and second["prompt_tokens"] == first["prompt_tokens"]
    assert 0 < second["cached_tokens"] <= second["prompt_tokens"], run["result"]
    assert all(0 < r["completion_tokens"] <= 4 for r in run["result"])


def test_prompt_over_the_context_is_a_terminal_error_naming_the_limit(
        llm_stack: StackHandle) -> None:
    """vLLM refuses a prompt longer than --max-model-len (2048): the run fails with
    `prompt_too_long` (not retryable) and the limit in its details, at once."""
    with llm_stack.client() as http:
        body = http.post("/v1/workflows/ask/runs", params={"wait": 120},
                         json={"input": {"question": "word " * 3000, "max_tokens": 8}},
                         timeout=150).json()
    assert body["status"] == "failed", body
    assert body["error"]["code"] == "prompt_too_long", body["error"]
    assert body["error"]["details"]["limit"] == 2048


def _tool_run(stack: StackHandle, loop: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with stack.client() as http:
        r = http.post("/v1/workflows/tool_transcript/runs", params={"wait": 240},
                      json={"input": {"loop": loop,
                                      "question": "What is the weather like in Paris?"}},
                      timeout=300)
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "succeeded", run
        rows = http.get(f"/v1/runs/{run['run_id']}/futures").json()["futures"]
    return run["result"], [f for f in rows if f["future"] != "0"]


def test_the_tool_loop_on_the_real_engine(llm_stack: StackHandle) -> None:
    """A real model proposes tool calls (vLLM with `--enable-auto-tool-choice
    --tool-call-parser hermes`): each turn is an `llm.turn` future, each call that fits its
    tool's schema a tool future, each that does not an error the model is told, and the loop
    ends within `max_turns` whatever the model does."""
    seen_futures = seen_errors = 0
    for loop, max_turns in (("required", 3), ("named", 2), ("forecast", 2)):
        out, rows = _tool_run(llm_stack, loop)
        turns = [f for f in rows if f["agent"] == "llm"]
        tools = [f for f in rows if f["agent"] == "tools"]
        assert 1 <= len(turns) <= max_turns, rows
        assert all(t["status"] == "succeeded" for t in turns), turns
        proposed = [c for m in out["messages"] if m["role"] == "assistant"
                    for c in m.get("tool_calls") or ()]
        answers = [m["content"] for m in out["messages"] if m["role"] == "tool"]
        errors = [a for a in answers if a.startswith("error")]
        assert proposed and len(answers) == len(proposed), out
        # every proposed call either ran as a future or was answered as an error
        assert len(tools) + len(errors) == len(proposed), (rows, out)
        assert all(e.startswith(("error: arguments of", "error: there is no tool"))
                   for e in errors), errors
        assert out.get("error") in (None, "max_turns_exceeded"), out
        print(loop, json.dumps(out)[:1500])
        seen_futures += len(tools)
        seen_errors += len(errors)
    print(f"tool calls run as futures: {seen_futures}, answered as errors: {seen_errors}")
    assert seen_futures > 0 and seen_errors > 0
