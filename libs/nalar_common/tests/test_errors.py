"""The error tree crosses the wire as data and comes back as the same type."""

from __future__ import annotations

import pytest
from nalar_common import errors as e


@pytest.mark.parametrize("cls", [e.InvalidInput, e.NotFound, e.AgentError, e.DependencyFailed,
                                 e.Timeout, e.Unavailable, e.NoInstance, e.PermissionDenied])
def test_round_trip_keeps_type_and_fields(cls: type[e.NalarError]) -> None:
    err = cls("went wrong", details={"k": 1})
    back = e.NalarError.from_wire(err.to_wire())
    assert type(back) is cls
    assert (back.message, back.details, back.retryable) == ("went wrong", {"k": 1}, cls.retryable)


def test_unknown_code_kept() -> None:
    back = e.NalarError.from_wire({"code": "quota_exceeded", "message": "m"})
    assert type(back) is e.NalarError
    assert back.error_code == "quota_exceeded"


def test_tree() -> None:
    assert issubclass(e.AgentError, e.TerminalError)
    assert issubclass(e.NoInstance, e.RetryableError)
    assert e.Unavailable.retryable and not e.InvalidInput.retryable
    assert e.InvalidInput.http_status == 422 and e.NotFound.http_status == 404
