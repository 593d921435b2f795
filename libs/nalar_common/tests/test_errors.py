"""The error tree crosses the wire as data and comes back as the same type."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from nalar_common import errors as e

# one line of the tree in the module docstring: prefix, class, "code", HTTP status
_TREE_LINE = re.compile(r'^    (?P<prefix>[│├└─ ]*)(?P<name>[A-Z]\w+)\s+"(?P<code>[a-z_]+)"'
                        r"\s+(?P<status>\d{3})\b")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, type[e.NalarError]]]:
    """A copy of the registry for tests that create error classes; the real one is restored."""
    copy = dict(e._REGISTRY)
    monkeypatch.setattr(e, "_REGISTRY", copy)
    yield copy


def _classes_here() -> set[type[e.NalarError]]:
    return {c for c in vars(e).values() if isinstance(c, type) and issubclass(c, e.NalarError)}


@pytest.mark.parametrize("cls", sorted(e.error_types().values(), key=lambda c: c.code),
                         ids=lambda c: c.__name__)
def test_every_registered_error_round_trips(cls: type[e.NalarError]) -> None:
    for retryable in (None, True, False):
        err = cls("went wrong", details={"k": 1, "nested": ["a"]}, retryable=retryable)
        back = e.NalarError.from_wire(err.to_wire())
        assert type(back) is cls
        assert back.error_code == cls.code == err.error_code
        assert (back.message, back.details) == ("went wrong", {"k": 1, "nested": ["a"]})
        assert back.retryable is (cls.retryable if retryable is None else retryable)


def test_every_error_class_is_registered_by_its_code() -> None:
    registered = e.error_types()
    for cls in _classes_here():
        assert registered[cls.code] is cls
    assert {"engine_unavailable", "engine_overloaded", "prompt_too_long", "payload_too_large",
            "lease_lost", "state_conflict", "no_run_context"} <= set(registered)


def test_retryable_is_per_instance() -> None:
    err = e.Unavailable("x", retryable=False)
    assert not err.retryable and e.Unavailable.retryable
    back = e.NalarError.from_wire(err.to_wire())
    assert type(back) is e.Unavailable and back.retryable is False
    forced = e.NalarError.from_wire(e.InvalidInput("y", retryable=True).to_wire())
    assert type(forced) is e.InvalidInput and forced.retryable is True
    assert e.NalarError.from_wire({"code": "unavailable"}).retryable is True  # class default


def test_engine_errors_decode_as_themselves() -> None:
    back = e.NalarError.from_wire(e.EngineUnavailable("down").to_wire())
    assert type(back) is e.EngineUnavailable and back.retryable
    assert isinstance(back, e.RetryableError)


def test_unknown_code_keeps_code_and_retryable() -> None:
    back = e.NalarError.from_wire({"code": "quota_exceeded", "message": "m"})
    assert type(back) is e.NalarError
    assert back.error_code == "quota_exceeded" and back.retryable is False
    again = e.NalarError.from_wire({"code": "lease_stolen", "message": "m", "retryable": True,
                                    "details": {"n": 2}})
    assert type(again) is e.NalarError and again.retryable is True
    assert again.to_wire() == {"code": "lease_stolen", "message": "m", "retryable": True,
                               "details": {"n": 2}}


def test_a_new_class_registers_itself(registry: dict[str, type[e.NalarError]]) -> None:
    class QuotaExceeded(e.TerminalError):
        code = "quota_exceeded_test"
        http_status = 429

    assert registry["quota_exceeded_test"] is QuotaExceeded
    assert type(e.NalarError.from_wire(QuotaExceeded("q").to_wire())) is QuotaExceeded


def test_a_duplicate_code_raises_at_class_creation(
        registry: dict[str, type[e.NalarError]]) -> None:
    with pytest.raises(TypeError, match=r"'unavailable'.*already used by .*Unavailable"):
        class Down(e.RetryableError):
            code = "unavailable"

    assert registry["unavailable"] is e.Unavailable


def test_the_same_class_created_again_replaces_itself(
        registry: dict[str, type[e.NalarError]]) -> None:
    """As when its module is reloaded."""
    def make() -> type[e.NalarError]:
        class Reloaded(e.NalarError):
            code = "reloaded_test"

        return Reloaded

    first, second = make(), make()
    assert first is not second and registry["reloaded_test"] is second


def test_a_subclass_without_its_own_code_decodes_as_its_parent(
        registry: dict[str, type[e.NalarError]]) -> None:
    class Narrower(e.NotFound):
        pass

    assert registry["not_found"] is e.NotFound
    assert type(e.NalarError.from_wire(Narrower("n").to_wire())) is e.NotFound


def test_the_docstring_tree_matches_the_classes() -> None:
    """Every class in the module's docstring tree, with its code, HTTP status and parent,
    and nothing else: the picture cannot drift from the code."""
    assert e.__doc__ is not None
    seen: dict[str, tuple[str, int, str | None]] = {}
    parents: list[str] = []  # the open branch, one name per depth
    for line in e.__doc__.splitlines():
        m = _TREE_LINE.match(line)
        if not m:
            continue
        depth = len(m["prefix"]) // 4
        parents[depth:] = [m["name"]]
        seen[m["name"]] = (m["code"], int(m["status"]), parents[depth - 1] if depth else None)
    actual = {c.__name__: (c.code, c.http_status,
                           c.__bases__[0].__name__ if c is not e.NalarError else None)
              for c in _classes_here()}
    assert seen == actual
    registered_here = {c.__name__ for c in e.error_types().values()
                       if c.__module__ == e.__name__}
    assert registered_here == set(seen)


def test_tree() -> None:
    assert issubclass(e.AgentError, e.TerminalError)
    assert issubclass(e.NoInstance, e.RetryableError)
    assert e.Unavailable.retryable and not e.InvalidInput.retryable
    assert e.InvalidInput.http_status == 422 and e.NotFound.http_status == 404
