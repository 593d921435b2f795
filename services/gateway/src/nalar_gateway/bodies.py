"""Request bodies read defensively and responses written safely: hostile JSON (too big, too
deep, `NaN`/`Infinity`, numbers of thousands of digits) is a 4xx before anything is
accepted, and no stored value (a `NaN` an agent returned) can turn a read into a 500."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from nalar_common.errors import InvalidInput, PayloadTooLarge

MAX_DEPTH = 64
"""How deeply a request body may nest (objects and arrays), documented in docs/security.md:
deeper input once failed runs with a server traceback and broke their journal for good."""


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as infinity without naming it
        raise ValueError(f"{text[:40]} is out of range for a number")
    return value


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"body is not acceptable JSON: {message}",
                        details={"errors": [{"field": "body", "message": message}]})


def depth(value: Any) -> int:
    """How deeply `value` nests, without recursion (a scalar is 0)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON body, or InvalidInput saying what is wrong with it."""
    if not body:
        return {}
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise _invalid(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise _invalid(str(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:  # NaN, 5,000-digit numbers, bad UTF-8
        raise _invalid(str(exc)) from None
    if depth(value) > max_depth:
        raise _invalid(f"nested deeper than {max_depth} levels")
    return value


async def read_json(request: Request, limit: int, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON body of a request, refused with 413 past `limit` bytes (before reading it
    all when its length is declared) and 422 when it is not acceptable JSON."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit}",
                              details={"limit": limit})
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes",
                                  details={"limit": limit})
    return parse_json(bytes(body), max_depth)


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None (what JSON can say)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """Strict JSON out: a NaN or infinity somewhere in a stored result becomes null rather
    than a 500 on every read of the run."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:
            return super().render(finite(content))
