"""A workflow's input checked against its signature and converted to the annotated types (a
pydantic model built from the signature): the gateway does it for every run it starts, local
mode for every run it runs, so the same input gives the same arguments, or the same
`InvalidInput` naming the fields, in both."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from nalar_common.errors import InvalidInput
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from nalar.registry import WorkflowSpec


def input_model(spec: WorkflowSpec) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    params = spec.signature.parameters.values()
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = Any if p.annotation is inspect.Parameter.empty else p.annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (ann, default)
    extra: Literal["allow", "forbid"] = (
        "allow" if any(p.kind == p.VAR_KEYWORD for p in params) else "forbid")
    return create_model(f"{spec.name}_input", __config__=ConfigDict(extra=extra), **fields)


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    errors = [{"field": ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(e["loc"])),
               "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    fields = ", ".join(e["field"] for e in errors)
    return InvalidInput(f"invalid {fields}: {errors[0]['message']}" if errors else "invalid input",
                        details={"errors": errors})


def validate_input(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "input") from None
    out = parsed.model_dump(mode="python")
    out.update(parsed.model_extra or {})
    return out
