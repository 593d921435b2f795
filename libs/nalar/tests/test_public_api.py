"""The public surface is pinned: changing it is a decision, not an accident."""

import nalar
import nalar_common


def test_sdk_all() -> None:
    assert sorted(nalar.__all__) == [
        "AgentError", "AgentLoop", "Cancelled", "Conflict", "DeadLettered", "DependencyFailed",
        "EngineOverloaded", "EngineUnavailable", "Future", "GuardrailExceeded", "GuardrailTripwire",
        "InvalidInput",
        "MalformedMessage", "MaxTurnsExceeded", "NalarError", "NoInstance", "NotFound",
        "PayloadTooLarge", "PermissionDenied", "PromptTooLong", "ReplayDiverged", "Retry",
        "RetryableError", "Stub",
        "TerminalError", "Timeout", "Unauthenticated", "Unavailable", "agent", "cancelled",
        "current_attempt", "current_run_id", "current_session_id", "idempotency_key", "llm",
        "managed_dict", "managed_list", "method", "once", "sandbox", "signal", "stub", "tool",
        "workflow"]
    for name in nalar.__all__:
        assert hasattr(nalar, name)


def test_public_errors_come_back_from_the_wire_as_themselves() -> None:
    """A caller catching `nalar.EngineUnavailable` (or any exported error) catches it when it
    was raised in another process."""
    exported = [getattr(nalar, n) for n in nalar.__all__]
    errors = [c for c in exported if isinstance(c, type) and issubclass(c, nalar.NalarError)]
    assert nalar.EngineUnavailable in errors and len(errors) == 24
    for cls in errors:
        back = nalar.NalarError.from_wire(cls("down").to_wire())
        assert type(back) is cls and back.retryable == cls.retryable


def test_common_all() -> None:
    assert sorted(nalar_common.__all__) == [
        "Envelope", "FutureRef", "Headers", "NalarError", "Names", "RetryableError",
        "TerminalError"]
