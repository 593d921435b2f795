"""Policy specs as config and `PUT /v1/policy` give them: `"module:Class"`, or
`{"class": "module:Class", "params": {...}}` for one with settings."""

from __future__ import annotations

import importlib
import json
from typing import Any


def parse_specs(spec: str | list[Any]) -> list[Any]:
    """`NALAR_GC_POLICIES` as a comma-separated list of `module:Class`, or a JSON list."""
    if isinstance(spec, list):
        return spec
    text = spec.strip()
    if text.startswith("["):
        loaded = json.loads(text)
        if not isinstance(loaded, list):
            raise ValueError("policies must be a list")
        return loaded
    return [s.strip() for s in text.split(",") if s.strip()]


def load_policy(item: Any) -> Any:
    """One policy from `"module:Class"` or `{"class": "module:Class", "params": {...}}`."""
    params: dict[str, Any] = {}
    if isinstance(item, dict):
        if set(item) - {"class", "params"} or not isinstance(item.get("class"), str):
            raise ValueError('a configured policy is {"class": "module:Class", "params": {}}')
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError("params must be an object")
        item = item["class"]
    if not isinstance(item, str):
        raise ValueError("a policy is a 'module:Class' string or an object with 'class'")
    module, _, name = item.partition(":")
    if not name:
        raise ValueError(f"policy {item!r} must be written module:Class")
    policy = getattr(importlib.import_module(module), name)(**params)
    if not callable(getattr(policy, "decide", None)):
        raise ValueError(f"policy {item!r} has no decide(state, out) method")
    return policy


def describe(item: Any) -> str:
    """The policy's class name, for snapshots and logs."""
    text = item if isinstance(item, str) else str(item.get("class"))
    return text.rpartition(":")[2]
