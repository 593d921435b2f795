"""The error tree and its wire form `{code, message, retryable, details}`.

    NalarError                 code "internal"
    ├── TerminalError          never retried (HTTP 4xx)
    │   ├── InvalidInput       "invalid_input"
    │   ├── NotFound           "not_found"
    │   ├── Conflict           "conflict"
    │   ├── Unauthenticated    "unauthenticated"    no or bad credentials (401)
    │   ├── PermissionDenied   "permission_denied"  a policy denies it (403)
    │   ├── GuardrailExceeded  "guardrail_exceeded" a guardrail stops the spend (429)
    │   ├── MalformedMessage   "malformed_message"
    │   ├── AgentError         "agent_error"        user code raised
    │   ├── DependencyFailed   "dependency_failed"  an argument future failed
    │   ├── Cancelled          "cancelled"
    │   ├── Timeout            "timeout"
    │   ├── DeadLettered       "dead_lettered"      the call's dead letter was discarded
    │   └── ReplayDiverged     "replay_diverged"    a replay asked a tool something new
    └── RetryableError         may succeed later (HTTP 503)
        ├── Unavailable        "unavailable"
        └── NoInstance         "no_instance"        no instance can run the agent

Errors cross the wire as data and are re-raised on the caller as the same type.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NalarError(Exception):
    code: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False
    http_status: ClassVar[int] = 500

    def __init__(self, message: str = "", *, details: dict[str, Any] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        if code is not None:
            self._code = code

    @property
    def error_code(self) -> str:
        return getattr(self, "_code", self.code)

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.error_code, "message": self.message,
                "retryable": self.retryable, "details": self.details}

    @staticmethod
    def from_wire(data: dict[str, Any]) -> NalarError:
        code = str(data.get("code", "internal"))
        cls = _BY_CODE.get(code, NalarError)
        err = cls(str(data.get("message", "")), details=dict(data.get("details") or {}))
        if cls is NalarError and code != NalarError.code:
            err._code = code
        return err

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.error_code!r}, message={self.message!r})"


class TerminalError(NalarError):
    code = "terminal"
    http_status = 400


class RetryableError(NalarError):
    code = "retryable"
    retryable = True
    http_status = 503


class InvalidInput(TerminalError):
    code = "invalid_input"
    http_status = 422


class NotFound(TerminalError):
    code = "not_found"
    http_status = 404


class Conflict(TerminalError):
    code = "conflict"
    http_status = 409


class PermissionDenied(TerminalError):
    code = "permission_denied"
    http_status = 403


class GuardrailExceeded(TerminalError):
    """A guardrail (`config/guardrails.yaml`) stopped a call or an LLM request before it
    spent; `details` names the `guardrail`, its `scope`, `measure`, `max` and `value`."""

    code = "guardrail_exceeded"
    http_status = 429


class Unauthenticated(TerminalError):
    """The caller sent no credentials, or ones that do not check out."""

    code = "unauthenticated"
    http_status = 401


class MalformedMessage(TerminalError):
    code = "malformed_message"


class AgentError(TerminalError):
    """User code raised; `details` carries `type`, `traceback`, `agent`, `method`."""

    code = "agent_error"
    http_status = 500


class DependencyFailed(TerminalError):
    code = "dependency_failed"
    http_status = 500


class Cancelled(TerminalError):
    code = "cancelled"
    http_status = 409


class Timeout(TerminalError):
    code = "timeout"
    http_status = 504


class DeadLettered(TerminalError):
    code = "dead_lettered"
    http_status = 500


class ReplayDiverged(TerminalError):
    """A replay reached a tool call that the original run did not make with these arguments:
    a replay never runs tools (override the call's future to give it a result)."""

    code = "replay_diverged"
    http_status = 409


class Unavailable(RetryableError):
    code = "unavailable"


class NoInstance(RetryableError):
    code = "no_instance"


_BY_CODE: dict[str, type[NalarError]] = {
    c.code: c
    for c in (NalarError, TerminalError, RetryableError, InvalidInput, NotFound, Conflict,
              Unauthenticated, PermissionDenied, GuardrailExceeded, MalformedMessage, AgentError,
              DependencyFailed, Cancelled, Timeout, DeadLettered, ReplayDiverged, Unavailable,
              NoInstance)
}
