"""Managed state: `nalar.managed_dict(name)` / `nalar.managed_list(name)` inside agent methods.

Per (session, agent), plain dicts and lists that look local: the host loads them when a call
starts, commits them atomically (fenced by the session lease, deduplicated by the call's id)
when it succeeds, and discards them when it fails.
"""

from __future__ import annotations

from typing import Any

from nalar_common.envelope import pack
from nalar_common.errors import InvalidInput
from nalar_common.errors import NoManagedState as NoManagedState

from nalar.context import current_or_none


class CallState:
    """One call's copy of its agent's state in its session."""

    def __init__(self, values: Any = None, version: int = 0) -> None:
        self.values: dict[str, Any] = values if isinstance(values, dict) else {}
        self.version = version
        self._loaded = pack(self.values)

    def _get(self, name: str, kind: type) -> Any:
        value = self.values.setdefault(name, kind())
        if not isinstance(value, kind):
            raise InvalidInput(f"managed state {name!r} is a {type(value).__name__}, "
                               f"not a {kind.__name__}")
        return value

    def dict(self, name: str) -> dict[str, Any]:
        return self._get(name, dict)  # type: ignore[no-any-return]

    def list(self, name: str) -> list[Any]:
        return self._get(name, list)  # type: ignore[no-any-return]

    def changed(self) -> bool:
        return bool(pack(self.values) != self._loaded)


def _state() -> CallState:
    ctx = current_or_none()
    state = getattr(ctx, "state", None) if ctx is not None else None
    if state is None:
        raise NoManagedState("managed state exists only inside an agent method of a run")
    return state  # type: ignore[no-any-return]


def managed_dict(name: str) -> dict[str, Any]:
    """The agent's dict `name` in the current session (created empty on first use)."""
    return _state().dict(name)


def managed_list(name: str) -> list[Any]:
    """The agent's list `name` in the current session (created empty on first use)."""
    return _state().list(name)
