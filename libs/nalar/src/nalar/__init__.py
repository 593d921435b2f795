"""Nalar SDK: plain-Python agents and workflows whose calls become futures on NATS JetStream."""

from nalar_common.errors import (
    AgentError,
    Cancelled,
    Conflict,
    DeadLettered,
    DependencyFailed,
    EngineOverloaded,
    EngineUnavailable,
    GuardrailExceeded,
    GuardrailTripwire,
    InvalidInput,
    MalformedMessage,
    MaxTurnsExceeded,
    NalarError,
    NoInstance,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PromptTooLong,
    ReplayDiverged,
    RetryableError,
    TerminalError,
    Timeout,
    Unauthenticated,
    Unavailable,
)

from nalar import llm, sandbox
from nalar.context import cancelled, current_attempt, current_run_id, current_session_id
from nalar.future import Future
from nalar.loop import AgentLoop
from nalar.once import idempotency_key, once
from nalar.registry import agent, method, tool, workflow
from nalar.retry import Retry
from nalar.signals import signal
from nalar.state import managed_dict, managed_list
from nalar.stub import Stub, stub

__all__ = [
    "AgentError",
    "AgentLoop",
    "Cancelled",
    "Conflict",
    "DeadLettered",
    "DependencyFailed",
    "EngineOverloaded",
    "EngineUnavailable",
    "Future",
    "GuardrailExceeded",
    "GuardrailTripwire",
    "InvalidInput",
    "MalformedMessage",
    "MaxTurnsExceeded",
    "NalarError",
    "NoInstance",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PromptTooLong",
    "ReplayDiverged",
    "Retry",
    "RetryableError",
    "Stub",
    "TerminalError",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "agent",
    "cancelled",
    "current_attempt",
    "current_run_id",
    "current_session_id",
    "idempotency_key",
    "llm",
    "managed_dict",
    "managed_list",
    "method",
    "once",
    "sandbox",
    "signal",
    "stub",
    "tool",
    "workflow",
]


def __getattr__(name: str) -> object:
    """`nalar.langgraph` and `nalar.openai_agents` on first use, after a plain `import nalar`
    (each needs its optional framework, which `import nalar` does not load)."""
    if name in ("langgraph", "openai_agents"):
        import importlib

        return importlib.import_module(f"nalar.{name}")
    raise AttributeError(f"module 'nalar' has no attribute {name!r}")
