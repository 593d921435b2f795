"""Policy specs as config and `PUT /v1/policy` give them: `"module:Class"`, or
`{"class": "module:Class", "params": {...}}` for one with settings.

A spec comes from data (a request, the KV bucket, the environment) and loading it imports and
runs code, so it may only name a class on the allow-list (`PolicyAllowList`): the built-in
policies, those registered under the `nalar.policies` entry point group, and those of
`NALAR_POLICIES_ALLOW`. The check comes before anything is imported; the params are then
checked against the class's declared parameters before it is constructed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from nalar_common.settings import PolicyClassSettings

ENTRY_POINT_GROUP = "nalar.policies"

_GC = "nalar_global_controller"
BUILTIN_POLICIES: tuple[str, ...] = (
    # as `nalar_global_controller.policies` exports them (the documented names) ...
    f"{_GC}.policies:LeastLoadedRouting", f"{_GC}.policies:SessionAffinity",
    f"{_GC}.policies:HeadOfLineMigration", f"{_GC}.policies:SessionPriority",
    f"{_GC}.policies:Rebalancer",
    # ... and in the modules that define them
    f"{_GC}.routing:LeastLoadedRouting", f"{_GC}.routing:SessionAffinity",
    f"{_GC}.migration:HeadOfLineMigration", f"{_GC}.priority:SessionPriority",
    f"{_GC}.rebalance:Rebalancer",
)
"""The global controller's own policies: kept here as names so that a process without the
global controller installed (the gateway) checks specs without importing it."""

_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")


class PolicySpecError(ValueError):
    """A policy spec that cannot be used; the message says why."""


class PolicyNotAllowed(PolicySpecError):
    """The spec names a class that is not on the allow-list; nothing was imported."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"policy {name!r} is not allowed: use a built-in policy, or register "
                         f"it in NALAR_POLICIES_ALLOW or the {ENTRY_POINT_GROUP!r} entry point "
                         "group (docs/policies.md)")


def _check_name(name: str, where: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise PolicySpecError(f"{where} {name!r} must be written module:Class")
    return name


def entry_point_policies(group: str = ENTRY_POINT_GROUP) -> frozenset[str]:
    """`module:Class` of every entry point installed packages register in `group`."""
    return frozenset(f"{ep.module}:{ep.attr}" for ep in entry_points(group=group) if ep.attr)


@dataclass(frozen=True)
class PolicyAllowList:
    """The `module:Class` names a policy spec may use, matched exactly."""

    names: frozenset[str]

    @classmethod
    def builtin(cls) -> PolicyAllowList:
        return cls(frozenset(BUILTIN_POLICIES))

    @classmethod
    def load(cls, settings: PolicyClassSettings) -> PolicyAllowList:
        """The built-ins, the installed `nalar.policies` entry points, and `settings.allow`;
        read once where a service starts (or a request is checked)."""
        configured = {_check_name(n, "NALAR_POLICIES_ALLOW entry")
                      for n in settings.allow.split(",") if n.strip()}
        return cls(frozenset(BUILTIN_POLICIES) | entry_point_policies() | configured)

    def check(self, name: str) -> None:
        if name not in self.names:
            raise PolicyNotAllowed(name)


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


def split_spec(item: Any) -> tuple[str, dict[str, Any]]:
    """(`module:Class`, params) of one spec, checked for shape only."""
    params: Any = {}
    if isinstance(item, dict):
        if set(item) - {"class", "params"} or not isinstance(item.get("class"), str):
            raise PolicySpecError('a configured policy is {"class": "module:Class", '
                                  '"params": {}}')
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise PolicySpecError("params must be an object")
        item = item["class"]
    if not isinstance(item, str):
        raise PolicySpecError("a policy is a 'module:Class' string or an object with 'class'")
    return _check_name(item, "policy"), params


def load_policy(item: Any, allowed: PolicyAllowList | None = None) -> Any:
    """One policy from `"module:Class"` or `{"class": "module:Class", "params": {...}}`.

    `allowed` defaults to the built-in policies only. Order matters: the name is checked
    against `allowed` before its module is imported, and the params against the class's
    parameters before it is constructed."""
    name, params = split_spec(item)
    (allowed or PolicyAllowList.builtin()).check(name)
    module, _, attr = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise PolicySpecError(f"policy {name!r} cannot be imported: {exc}") from exc
    if not isinstance(cls, type) or not callable(getattr(cls, "decide", None)):
        raise PolicySpecError(f"policy {name!r} is not a class with a decide(state, out) "
                              "method")
    kwargs = validate_params(cls, params, name)
    try:
        policy = cls(**kwargs)
    except Exception as exc:
        raise PolicySpecError(f"policy {name!r} refused its params: {exc}") from exc
    if not callable(getattr(policy, "decide", None)):
        raise PolicySpecError(f"policy {name!r} has no decide(state, out) method")
    return policy


def params_model(cls: type) -> type[BaseModel]:
    """The class's `Params` model if it declares one, else one built from its constructor's
    signature (unknown params refused unless it takes `**kwargs`)."""
    declared = getattr(cls, "Params", None)
    if isinstance(declared, type) and issubclass(declared, BaseModel):
        return declared
    try:
        sig = inspect.signature(cls, eval_str=True)
    except Exception:  # an annotation that does not evaluate here: checked as Any
        sig = inspect.signature(cls)
    fields: dict[str, Any] = {}
    extra: Literal["forbid", "allow"] = "forbid"
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            extra = "allow"
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not p.name.startswith("_"):
            annotation = Any if p.annotation is p.empty or isinstance(p.annotation, str) \
                else p.annotation
            fields[p.name] = (annotation, ... if p.default is p.empty else p.default)
    config = ConfigDict(extra=extra, arbitrary_types_allowed=True, protected_namespaces=())
    model: type[BaseModel] = create_model(f"{cls.__name__}Params", __config__=config, **fields)
    return model


def validate_params(cls: type, params: dict[str, Any], name: str) -> dict[str, Any]:
    """The keyword arguments to construct `cls` with, or PolicySpecError naming each bad
    param."""
    model = params_model(cls)
    if model.model_config.get("extra") != "allow":  # a declared model may ignore extras
        known = set(model.model_fields) | {f.alias for f in model.model_fields.values()}
        unknown = sorted(set(params) - known)
        if unknown:
            raise PolicySpecError(f"policy {name!r}: unknown param{'s' * (len(unknown) > 1)} "
                                  f"{', '.join(map(repr, unknown))} (takes: "
                                  f"{', '.join(model.model_fields) or 'none'})")
    try:
        checked = model.model_validate(params)
    except ValidationError as exc:
        problems = [f"param {'.'.join(str(p) for p in err['loc']) or 'params'!r}: {err['msg']}"
                    for err in exc.errors()]
        raise PolicySpecError(f"policy {name!r}: {'; '.join(problems)}") from None
    kwargs = {k: getattr(checked, k) for k in checked.model_fields_set
              if k in model.model_fields}
    kwargs.update(checked.model_extra or {})
    return kwargs


def describe(item: Any) -> str:
    """The policy's class name, for snapshots and logs."""
    text = item if isinstance(item, str) else str(item.get("class"))
    return text.rpartition(":")[2]
