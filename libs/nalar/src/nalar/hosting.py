"""The SDK's execution support, for processes that run user code (the agent host): loading an
app, the context a call runs in, invoking a method within its time, tools that run once,
LLM answers served to a replay, guardrail checks, engines, and the runtime that carries the
calls the code makes. Users write against `nalar` (stubs, futures, decorators); the command
line is `nalar.cli`; this is the third part, and the only one the host imports.
"""

from nalar.app import App, load_app
from nalar.context import CallContext, CancelFlag
from nalar.engines import Engine, LLMSettings, SimulatedEngine, build_engine
from nalar.execution import as_error, context_for, invoke, lookup, resolve_args
from nalar.guard import GuardClient
from nalar.once import run_once
from nalar.registry import MethodSpec
from nalar.replay import RecordedLLM
from nalar.runtime import Runtime
from nalar.signals import Suspend
from nalar.state import CallState

__all__ = [
    "App",
    "CallContext",
    "CallState",
    "CancelFlag",
    "Engine",
    "GuardClient",
    "LLMSettings",
    "MethodSpec",
    "RecordedLLM",
    "Runtime",
    "SimulatedEngine",
    "Suspend",
    "as_error",
    "build_engine",
    "context_for",
    "invoke",
    "load_app",
    "lookup",
    "resolve_args",
    "run_once",
]
