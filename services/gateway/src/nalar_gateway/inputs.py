"""Request bodies; a workflow's input is checked by `nalar.inputs` (also used by local
mode, so both check it alike)."""

from __future__ import annotations

from typing import Any

from nalar.inputs import input_model, validate_input, validation_error
from nalar_common.subjects import ID
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RunRequest", "input_model", "validate_input", "validation_error"]


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
