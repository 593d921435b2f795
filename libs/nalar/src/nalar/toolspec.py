"""A tool as a model sees it: a name, a description and its parameters as JSON Schema, built
from a Python function's signature and type hints, and the check that the arguments a model
proposes fit that schema before anything runs.

Models propose arguments that do not fit (a small model on vLLM answers `{"copout": "32"}`
for a `city` parameter): `ToolSpec.check` turns them into the function's keyword arguments,
converted to the annotated types, or raises `ToolArgumentsError` with a message meant for
the model, which the agent loop hands back to it as the tool's result. One leniency: a bare
JSON value (`"Paris"`) for a tool with exactly one parameter is taken as that parameter, and
checked as such (small models answer a named `tool_choice` that way).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nalar_common.errors import InvalidInput
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI-style APIs accept


class ToolArgumentsError(InvalidInput):
    """The arguments a model proposed do not fit the tool's parameters (said to the model)."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of an object
    model: type[BaseModel]

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool-calling form: `{"type": "function", "function": {...}}`."""
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}

    def parse(self, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        """The proposed arguments (a JSON text, as models send them, or a dict) as a JSON
        object, not yet checked against the parameters."""
        if arguments is None or arguments == "":
            data: Any = {}
        elif isinstance(arguments, str):
            try:
                data = json.loads(arguments)
            except (ValueError, RecursionError) as exc:
                raise ToolArgumentsError(f"arguments of {self.name} are not JSON: {exc}",
                                         details={"tool": self.name}) from None
        else:
            data = arguments
        fields = list(self.model.model_fields)
        if not isinstance(data, dict) and len(fields) == 1 and \
                self.model.model_config.get("extra") == "forbid":
            data = {fields[0]: data}  # a bare value for a one-parameter tool (small models)
        if not isinstance(data, dict):
            raise ToolArgumentsError(f"arguments of {self.name} must be a JSON object, not "
                                     f"{type(data).__name__}", details={"tool": self.name})
        return data

    def _validate(self, arguments: str | dict[str, Any] | None) -> BaseModel:
        data = self.parse(arguments)
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
                        for e in exc.errors()]
            raise ToolArgumentsError(
                f"arguments of {self.name} do not fit its parameters: " + "; ".join(problems)
                + f". Expected: {json.dumps(self.parameters.get('properties', {}))}",
                details={"tool": self.name, "problems": problems}) from None
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            # a validator of the user's that failed in a way pydantic does not wrap
            raise ToolArgumentsError(f"arguments of {self.name} do not fit its parameters: "
                                     f"{type(exc).__name__}: {exc}",
                                     details={"tool": self.name}) from None

    def check(self, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        """The proposed arguments as keyword arguments of the annotated types (validated
        once); `ToolArgumentsError` naming what does not fit."""
        parsed = self._validate(arguments)
        return {**{name: getattr(parsed, name) for name in type(parsed).model_fields},
                **(parsed.model_extra or {})}

    def checked_json(self, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        """The proposed arguments validated once and in JSON types again (what travels to an
        agent method on another host, which takes them as they are)."""
        parsed = self._validate(arguments)
        return {**parsed.model_dump(mode="json"), **(parsed.model_extra or {})}


def tool_name(base: str) -> str:
    """`base` as a tool name (1-64 of [A-Za-z0-9_-]): as it is when it is one, else cleaned
    and cut with a digest of the whole, so that different bases never meet."""
    if TOOL_NAME.fullmatch(base):
        return base
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", base)
    return f"{clean[:52]}_{hashlib.sha256(base.encode()).hexdigest()[:11]}"


def tool_spec(fn: Callable[..., Any], *, name: str | None = None,
              description: str | None = None) -> ToolSpec:
    """The spec of a function or method (`self`/`cls` left out): each parameter a property,
    required when it has no default, typed by its annotation (unannotated: any JSON)."""
    tool = str(name or getattr(fn, "__name__", ""))
    if not TOOL_NAME.fullmatch(tool):
        raise ValueError(f"tool name {tool!r} must be 1-64 of [A-Za-z0-9_-]")
    fields: dict[str, Any] = {}
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    # `**kwargs`: the tool takes any further arguments (JSON values), as they come
    extra: Literal["allow", "forbid"] = (
        "allow" if any(p.kind == p.VAR_KEYWORD for p in params) else "forbid")
    for p in params:
        if p.kind == p.VAR_KEYWORD:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) or p.name.startswith("_") or \
                p.name.startswith("model_"):
            raise ValueError(f"tool {tool}: parameter {p.name!r} cannot be given by name "
                             "in a JSON object (no *args, positional-only parameters, or "
                             "names starting with `_` or `model_`)")
        fields[p.name] = (_hint(fn, p),
                          ... if p.default is inspect.Parameter.empty else p.default)
    model = create_model(f"{tool}_arguments", __config__=ConfigDict(extra=extra), **fields)
    parameters = model.model_json_schema()
    parameters.pop("title", None)
    for prop in parameters.get("properties", {}).values():
        prop.pop("title", None)
    doc = description if description is not None else _first_paragraph(inspect.getdoc(fn))
    return ToolSpec(tool, doc, parameters, model)


def _hint(fn: Callable[..., Any], p: inspect.Parameter) -> Any:
    """A parameter's type: its annotation, a string one (`from __future__ import
    annotations`) evaluated in the function's module; any JSON value when it does not
    resolve there (a name imported only for type checkers)."""
    ann = p.annotation
    if ann is inspect.Parameter.empty:
        return Any
    if isinstance(ann, str):
        try:
            return eval(ann, getattr(fn, "__globals__", {}))  # the module's own annotation
        except Exception:
            return Any
    return ann


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n", 1)[0].split())


__all__ = ["ToolArgumentsError", "ToolSpec", "tool_spec"]
