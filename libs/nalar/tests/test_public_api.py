"""The public surface is pinned: changing it is a decision, not an accident."""

import nalar
import nalar_common


def test_sdk_all() -> None:
    assert sorted(nalar.__all__) == [
        "AgentError", "DependencyFailed", "Future", "NalarError", "NoInstance", "RetryableError",
        "Stub", "TerminalError", "Timeout", "agent", "cancelled", "current_run_id",
        "current_session_id",
        "llm", "managed_dict", "managed_list", "method", "signal", "stub", "workflow"]
    for name in nalar.__all__:
        assert hasattr(nalar, name)


def test_common_all() -> None:
    assert sorted(nalar_common.__all__) == [
        "Envelope", "FutureRef", "Headers", "NalarError", "Names", "RetryableError",
        "TerminalError"]
