"""Nalar SDK: plain-Python agents and workflows whose calls become futures on NATS JetStream."""

from nalar_common.errors import (
    AgentError,
    DependencyFailed,
    NalarError,
    NoInstance,
    RetryableError,
    TerminalError,
    Timeout,
)

from nalar import llm
from nalar.context import cancelled, current_run_id, current_session_id
from nalar.future import Future
from nalar.registry import agent, method, workflow
from nalar.signals import signal
from nalar.state import managed_dict, managed_list
from nalar.stub import Stub, stub

__all__ = [
    "AgentError",
    "DependencyFailed",
    "Future",
    "NalarError",
    "NoInstance",
    "RetryableError",
    "Stub",
    "TerminalError",
    "Timeout",
    "agent",
    "cancelled",
    "current_run_id",
    "current_session_id",
    "llm",
    "managed_dict",
    "managed_list",
    "method",
    "signal",
    "stub",
    "workflow",
]
