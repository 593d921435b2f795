"""Schemathesis hooks for tests/test_api_fuzz_e2e.py (`SCHEMATHESIS_HOOKS=fuzz_hooks`):
hostile JSON mixed into generated bodies (nesting past the gateway's limit, numbers of
thousands of digits and at the edge of float range, long strings), and a check that no
response carries a server traceback or a file path. (NaN and infinities cannot be sent
through schemathesis's client, which refuses them: tests/test_hostile_input_e2e.py sends
them raw.)"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

_LEAK = re.compile(r'Traceback \(most recent call last\)|File "/[^"]+\.py"')


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"x": [value]}
    return value


_HOSTILE = [
    lambda body: {**body, "input": _deep(40)} if isinstance(body, dict) else _deep(40),
    lambda body: {**body, "input": {"n": 10 ** 4000}} if isinstance(body, dict)
    else [1.7e308, -1.7e308],
    lambda body: {**body, "input": {"s": "x" * 200_000}} if isinstance(body, dict)
    else "y" * 200_000,
    lambda body: {"value": _deep(70), "overrides": {"1": _deep(70)}, "policies": [_deep(70)]},
]


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    """Every third body made hostile, the same way for the same drawn body (deterministic,
    as Hypothesis needs)."""
    pick = len(repr(body)) % (3 * len(_HOSTILE))
    return _HOSTILE[pick](body) if pick < len(_HOSTILE) else body


@schemathesis.check
def no_server_traceback(ctx: Any, response: Any, case: Any) -> None:
    """No answer shows a server traceback or a path to the server's code."""
    text = response.text if isinstance(response.text, str) else ""
    found = _LEAK.search(text)
    if found:
        raise AssertionError(f"the response leaks server internals: {found.group(0)!r}")
