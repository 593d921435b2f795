"""The Tasks and Plans of the coding-agent graph (graphs/coding_agent.yaml). Tasks do work —
a lookup in a small local corpus (RAG), LLM calls through `nalar.llm` on the host's engine,
and code the "model" wrote, run in Nalar's sandbox; Plans decide what runs next. With the
simulated engine the LLM's words are filler, so the decisions here are rules a test can
follow: a description of fewer than four words is unclear, a branch's first attempt fails
its validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nalar
from nalar.agentgraph import PlanResult, TaskResult, plan, task

CORPUS = {
    "todo": "A todo app keeps tasks with a title, a done flag and tags.",
    "api": "An HTTP API exposes resources with GET, POST, PUT and DELETE.",
    "tags": "Tags group items; an item may have several.",
    "ui": "A UI lists items and lets a person add, edit and finish them.",
}


def _request(results: Mapping[str, Any]) -> str:
    answer = results["human_input"]["answer"]
    return str(answer.get("app") if isinstance(answer, dict) else answer)


@plan
def call_rag(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["rag_lookup"], output={"request": _request(results)})


@task
def rag_lookup(input: Any) -> dict[str, Any]:
    words = input["request"].lower().split()
    return {**input, "context": [text for key, text in CORPUS.items()
                                 if any(key in w for w in words)]}


@plan
def prompt_llm(results: Mapping[str, Any]) -> PlanResult:
    return PlanResult(next_tasks=["submit_to_llm"], output=results["rag_lookup"])


@task
def submit_to_llm(input: Any) -> dict[str, Any]:
    summary = nalar.llm.chat([{"role": "system", "content": "Summarise the app to build."},
                              {"role": "user", "content": input["request"] + "\n" +
                               "\n".join(input["context"])}], max_tokens=24).text
    return {**input, "summary": summary, "clear": len(input["request"].split()) >= 4}


@plan
def refine_or_execute(results: Mapping[str, Any]) -> PlanResult:
    if "accept" in results:  # the person rejected the code: refine with their feedback
        shown, answer = results["accept"]["input"], results["accept"]["answer"]
        spec = {**shown["spec"], "feedback": answer.get("feedback", "")
                if isinstance(answer, dict) else str(answer), "round": shown["spec"]["round"] + 1}
        return PlanResult(next_tasks=["code_api", "code_ui"], output=spec)
    found = results["submit_to_llm"]
    if not found["clear"]:
        return PlanResult(next_tasks=["human_input"],
                          output={"question": f"What should {found['request']!r} do?"})
    return PlanResult(next_tasks=["code_api", "code_ui"],
                      output={"request": found["request"], "summary": found["summary"],
                              "feedback": "", "round": 1})


async def _code(part: str, spec: Any) -> dict[str, Any]:
    """The code tool: write the code (a template here) and run it in the sandbox."""
    spec = spec.get("spec", spec)
    attempt = int(spec.get("attempt", 0)) + 1
    code = (f"parts = {part!r}, {spec['request']!r}, {spec.get('feedback', '')!r}\n"
            f"print('built', parts[0], 'for', parts[1], 'attempt', {attempt})")
    ran = await nalar.sandbox.python(code)
    return {"spec": {**spec, "attempt": attempt}, "part": part, "code": code, "ran": ran}


@task
async def code_api(input: Any) -> dict[str, Any]:
    return await _code("api", input)


@task
async def code_ui(input: Any) -> dict[str, Any]:
    return await _code("ui", input)


@plan
def ask_llm(results: Mapping[str, Any]) -> PlanResult:
    (branch,) = results.values()
    return PlanResult(next_tasks=[f"validate_{branch['part']}"], output=branch)


@task
def validate(input: Any) -> dict[str, Any]:
    review = nalar.llm.chat([{"role": "user", "content": "Review this code:\n" +
                              input["code"]}], max_tokens=16).text
    ok = input["ran"].startswith("exit code: 0") and input["spec"]["attempt"] >= 2
    return {**input, "review": review, "passed": ok}


@plan
def pass_or_fail(results: Mapping[str, Any]) -> PlanResult:
    (checked,) = results.values()
    part = checked["part"]
    if checked["passed"]:
        return PlanResult(next_tasks=[f"done_{part}"], output=checked)
    return PlanResult(next_tasks=[f"code_{part}"], output=checked["spec"])


@task
def done(input: Any) -> dict[str, Any]:
    return {"part": input["part"], "code": input["code"], "spec": input["spec"]}


@plan
def collect(results: Mapping[str, Any]) -> PlanResult:
    spec = {k: v for k, v in results["done_api"]["spec"].items() if k != "attempt"}
    return PlanResult(next_tasks=["accept"], output={
        "spec": spec, "code": {r["part"]: r["code"] for r in results.values()}})


__all__ = ["TaskResult"]
