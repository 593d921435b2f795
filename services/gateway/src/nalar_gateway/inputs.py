"""Request bodies and workflow input validation (pydantic models built from signatures)."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from nalar.registry import WorkflowSpec
from nalar_common.errors import InvalidInput
from nalar_common.subjects import ID
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = None
    idempotency_key: str | None = Field(default=None, max_length=256)
    priority: int = Field(default=0, ge=-1000, le=1000)
    timeout_s: float | None = Field(default=None, gt=0, le=365 * 24 * 3600, description=(
        "The run's deadline, in seconds from now: past it, the run and every call it made "
        "that has not finished resolve to a `timeout` error naming where it was stuck "
        "(default: NALAR_GATEWAY_RUN_TIMEOUT_S)"))

    @field_validator("session_id")
    @classmethod
    def _session(cls, v: str | None) -> str | None:
        if v is not None and not ID.match(v):
            raise ValueError("must be 1-128 characters of [A-Za-z0-9_-]")
        return v


def input_model(spec: WorkflowSpec) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, p in spec.signature.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = Any if p.annotation is inspect.Parameter.empty else p.annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[name] = (ann, default)
    extra: Literal["allow", "forbid"] = "allow" if any(p.kind == p.VAR_KEYWORD
                           for p in spec.signature.parameters.values()) else "forbid"
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
