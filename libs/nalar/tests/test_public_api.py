"""The public surface is pinned: changing it is a decision, not an accident."""

import nalar
import nalar_common


def test_sdk_all() -> None:
    assert sorted(nalar.__all__) == [
        "AgentError", "Cancelled", "DependencyFailed", "Future", "GuardrailExceeded",
        "NalarError", "NoInstance", "PermissionDenied", "Retry", "RetryableError", "Stub",
        "TerminalError", "Timeout", "Unavailable", "agent", "cancelled", "current_attempt",
        "current_run_id", "current_session_id", "idempotency_key", "llm", "managed_dict",
        "managed_list", "method", "once", "signal", "stub", "tool", "workflow"]
    for name in nalar.__all__:
        assert hasattr(nalar, name)


def test_common_all() -> None:
    assert sorted(nalar_common.__all__) == [
        "Envelope", "FutureRef", "Headers", "NalarError", "Names", "RetryableError",
        "TerminalError"]
