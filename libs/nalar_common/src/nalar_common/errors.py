"""The error tree and its wire form `{code, message, retryable, details}`.

    class                      code                      HTTP
    NalarError                 "internal"                500
    ├── BlockingInEventLoop    "blocking_in_event_loop"  500  a blocking wait on the event loop
    ├── NoRunContext           "no_run_context"          500  a stub called outside a run
    ├── NoManagedState         "no_managed_state"        500  managed state outside a call
    ├── TerminalError          "terminal"                400  never retried
    │   ├── InvalidInput       "invalid_input"           422
    │   ├── NotFound           "not_found"               404
    │   ├── Conflict           "conflict"                409
    │   ├── Unauthenticated    "unauthenticated"         401  no or bad credentials
    │   ├── PermissionDenied   "permission_denied"       403  a policy denies it
    │   ├── GuardrailExceeded  "guardrail_exceeded"      429  a guardrail stops the spend
    │   ├── PayloadTooLarge    "payload_too_large"       413  a request body over the limit
    │   ├── MalformedMessage   "malformed_message"       400
    │   ├── AgentError         "agent_error"             500  user code raised
    │   ├── DependencyFailed   "dependency_failed"       500  an argument future failed
    │   ├── Cancelled          "cancelled"               409
    │   ├── Timeout            "timeout"                 504
    │   ├── DeadLettered       "dead_lettered"           500  the call's dead letter discarded
    │   ├── ReplayDiverged     "replay_diverged"         409  a replay asked a tool anew
    │   ├── MaxTurnsExceeded   "max_turns_exceeded"      422  an agent loop ran out of turns
    │   ├── GuardrailTripwire  "guardrail_tripwire"      422  an agent framework's guardrail
    │   └── PromptTooLong      "prompt_too_long"         400  the prompt does not fit the model
    └── RetryableError         "retryable"               503  may succeed later
        ├── Unavailable        "unavailable"             503
        ├── NoInstance         "no_instance"             503  no instance can run the agent
        ├── EngineUnavailable  "engine_unavailable"      503  the LLM engine is down or failed
        ├── EngineOverloaded   "engine_overloaded"       503  no KV-cache room in the engine
        ├── LeaseLost          "lease_lost"              503  another instance took the state
        └── StateConflict      "state_conflict"          503  a concurrent state write won

Every class registers itself under its `code` when it is created (`error_types()`), so a
process that decodes the wire re-raises the same type; all of them live here so that importing
this module is enough. `retryable` travels per instance; a code the receiver does not know
comes back as a `NalarError` that keeps the code and the retryable flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

_REGISTRY: dict[str, type[NalarError]] = {}


def error_types() -> Mapping[str, type[NalarError]]:
    """Every registered error class by its code (read-only)."""
    return MappingProxyType(_REGISTRY)


def _register(cls: type[NalarError]) -> None:
    """Register `cls` by the code it declares itself; a subclass that declares none decodes
    as its parent. The same class created again (a reloaded module) replaces its old self."""
    code = cls.__dict__.get("code")
    if code is None:
        return
    if not isinstance(code, str) or not code:
        raise TypeError(f"{cls.__qualname__}.code must be a non-empty string")
    known = _REGISTRY.get(code)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__,
                                                                       cls.__qualname__):
        raise TypeError(f"error code {code!r} of {cls.__module__}.{cls.__qualname__} is "
                        f"already used by {known.__module__}.{known.__qualname__}")
    _REGISTRY[code] = cls


class NalarError(Exception):
    code: ClassVar[str] = "internal"
    retryable: bool = False  # the class's default; an instance may say otherwise
    http_status: ClassVar[int] = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    def __init__(self, message: str = "", *, details: dict[str, Any] | None = None,
                 code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        if code is not None:
            self._code = code
        if retryable is not None:
            self.retryable = retryable

    @property
    def error_code(self) -> str:
        return getattr(self, "_code", self.code)

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.error_code, "message": self.message,
                "retryable": self.retryable, "details": self.details}

    @staticmethod
    def from_wire(data: Mapping[str, Any]) -> NalarError:
        """The error `to_wire` wrote, as its own type when this process knows its code."""
        code = str(data.get("code") or NalarError.code)
        flag = data.get("retryable")
        retryable = flag if isinstance(flag, bool) else None
        message = str(data.get("message", ""))
        details = dict(data.get("details") or {})
        cls = _REGISTRY.get(code)
        if cls is None:
            return NalarError(message, details=details, code=code, retryable=retryable)
        return cls(message, details=details, retryable=retryable)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.error_code!r}, message={self.message!r})"


_register(NalarError)


class BlockingInEventLoop(NalarError):
    """A blocking wait (`Future.value()`, `nalar.llm.chat`) on the event loop's own thread,
    which would deadlock it; `await` instead."""

    code = "blocking_in_event_loop"


class NoRunContext(NalarError):
    """A stub was called outside a workflow or an agent method."""

    code = "no_run_context"


class NoManagedState(NalarError):
    """Managed state was used outside an agent method of a run."""

    code = "no_managed_state"


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


class PayloadTooLarge(TerminalError):
    """A request body over the gateway's limit; `details.limit` names it in bytes."""

    code = "payload_too_large"
    http_status = 413


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


class MaxTurnsExceeded(TerminalError):
    """An agent loop (`nalar.AgentLoop`) reached its `max_turns` without a final answer."""

    code = "max_turns_exceeded"
    http_status = 422


class GuardrailTripwire(TerminalError):
    """A guardrail of an agent framework run on Nalar tripped (an OpenAI Agents SDK input,
    output or tool guardrail): the run ends. `details`: the guardrail's name, its kind, and
    its `output_info` in JSON form. (Nalar's own limits raise `GuardrailExceeded`.)"""

    code = "guardrail_tripwire"
    http_status = 422


class PromptTooLong(TerminalError):
    """The prompt does not fit the model's context; `details.limit` names the limit."""

    code = "prompt_too_long"
    http_status = 400


class Unavailable(RetryableError):
    code = "unavailable"


class NoInstance(RetryableError):
    code = "no_instance"


class EngineUnavailable(RetryableError):
    """The LLM engine is down, timed out or answered 5xx: retrying may work."""

    code = "engine_unavailable"


class EngineOverloaded(RetryableError):
    """The LLM engine has no KV-cache room for the request right now."""

    code = "engine_overloaded"


class LeaseLost(RetryableError):
    """Another instance took the session's state over while this call ran (a zombie)."""

    code = "lease_lost"


class StateConflict(RetryableError):
    """The session's state changed under this call (a concurrent write won)."""

    code = "state_conflict"
