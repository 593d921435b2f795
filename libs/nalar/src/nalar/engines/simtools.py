"""The simulated engine's tool calling: which tool it calls and with what arguments, filled
from the tool's JSON Schema by the request's seeded random source, or read from a script."""

from __future__ import annotations

import json
import random
from typing import Any

from nalar.engines.base import LLMRequest, ToolCall

_FILLER = ("alpha", "beta", "gamma", "delta")


Script = list[dict[str, Any]] | dict[str, list[dict[str, Any]]] | None


def scripted(script: Script, request: LLMRequest) -> dict[str, Any] | None:
    """The script's entry for this turn: the n-th assistant message of the conversation. A
    dict of scripts picks the first whose key is in the conversation's first user message
    (one engine, a script per scenario)."""
    if not script or request.messages is None:
        return None
    if isinstance(script, dict):
        first = next((str(m.get("content") or "") for m in request.messages
                      if m.get("role") == "user"), "")
        script = next((steps for key, steps in script.items() if key in first), None)
        if not script:
            return None
    turn = sum(1 for m in request.messages if m.get("role") == "assistant")
    return script[turn] if turn < len(script) else None


def propose(request: LLMRequest, rng: random.Random, tag: str,
            step: dict[str, Any] | None) -> tuple[ToolCall, ...]:
    """The tool calls of this turn (none: it answers in text)."""
    tools: list[dict[str, Any]] = [t["function"] for t in request.tools or ()
                                   if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = request.tool_choice
    if not tools or choice == "none":
        return ()
    if step is not None:
        return tuple(ToolCall(f"call_{tag}_{i}", c["name"], _arguments(c.get("arguments")))
                     for i, c in enumerate(step.get("tool_calls") or ()))
    named = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    messages = request.messages or []
    if choice != "required" and named is None and messages and \
            messages[-1].get("role") == "tool":
        return ()  # it has the tools' answers: now it answers
    pool = [t for t in tools if t.get("name") == named] if named else tools
    if not pool:
        return ()
    tool = pool[rng.randrange(len(pool))]
    words = _words(messages)
    params = _dict(tool.get("parameters"))
    defs = _dict(params.get("$defs"))
    args = fill(params, rng, words, defs)
    return (ToolCall(f"call_{tag}_0", str(tool.get("name") or ""), json.dumps(args)),)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value if value is not None else {})


def _words(messages: list[dict[str, Any]]) -> list[str]:
    """Words of the last user message (what a string argument is filled with)."""
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            words = [w.strip(".,;:!?\"'()") for w in m["content"].split()]
            return [w for w in words if w] or list(_FILLER)
    return list(_FILLER)


def fill(schema: dict[str, Any], rng: random.Random, words: list[str],
         defs: dict[str, Any], depth: int = 0) -> Any:
    """A value that fits `schema` (the subset tools use: types, enums, refs, unions); a word
    for what it does not know."""
    if depth > 8:
        return None
    if not isinstance(schema, dict):
        return words[rng.randrange(len(words))]
    if "$ref" in schema:
        return fill(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), rng, words, defs,
                    depth + 1)
    if schema.get("enum"):
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or () if isinstance(o, dict) and
                   o.get("type") != "null"]
        if options:
            return fill(options[0], rng, words, defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "integer":
        low, high = int(schema.get("minimum", 1)), int(schema.get("maximum", 100))
        return rng.randint(low, max(low, high))
    if kind == "number":
        return round(rng.uniform(float(schema.get("minimum", 0)),
                                 float(schema.get("maximum", 100))), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return [fill(schema.get("items") or {}, rng, words, defs, depth + 1)]
    if kind == "object":
        props = _dict(schema.get("properties"))
        return {k: fill(props[k], rng, words, defs, depth + 1)
                for k in schema.get("required") or () if isinstance(k, str) and k in props}
    return words[rng.randrange(len(words))]
