"""Stub classes from Ventis-style interface files (`agents/*.yaml`)."""

from __future__ import annotations

import ast
import inspect
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nalar_common.errors import InvalidInput

from nalar.stubgen.model import (
    _HINTS,
    _Agent,
    _default_source,
    _hints,
    _Method,
    _names,
    _Param,
    _type_expr,
)
from nalar.stubgen.python_source import _Scope


@dataclass(frozen=True)
class _YamlAgent:
    """One agent from a YAML interface file; `build` needs the module's class names."""

    cls_name: str
    source: str
    doc: str | None
    hints: str | None
    methods: tuple[_Method, ...]
    scope: _Scope

    def build(self, own: frozenset[str]) -> _Agent:
        names = _names(e for m in self.methods for e in (m.returns, *(p.annotation
                                                                      for p in m.params)))
        return _Agent(self.cls_name, self.cls_name, self.source, self.doc, self.hints,
                      self.methods, frozenset(self.scope.resolve(names, own)))


def _yaml_sources(root: Path, python_names: set[str]) -> dict[str, list[_YamlAgent]]:
    """YAML-defined agents that have no Python class, by file stem."""
    paths = sorted([*(root / "agents").glob("*.yaml"), *(root / "agents").glob("*.yml")])
    if not paths:
        return {}
    try:
        import yaml
    except ImportError:
        raise InvalidInput("reading YAML interface files needs PyYAML: pip install pyyaml") \
            from None
    out: dict[str, list[_YamlAgent]] = {}
    seen: dict[str, str] = {}
    for path in paths:
        rel = f"agents/{path.name}"
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
                    if d is not None]
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{rel}: not valid YAML: {exc}") from None
        for doc in docs:
            agent = _yaml_agent(doc, rel)
            if agent.cls_name in python_names:
                continue  # the Python class is the source of truth
            if agent.cls_name in seen:
                raise InvalidInput(f"{rel}: agent {agent.cls_name} is also defined in "
                                   f"{seen[agent.cls_name]}")
            seen[agent.cls_name] = rel
            out.setdefault(path.stem, []).append(agent)
    return out


def _get(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = None) -> Any:
    value = mapping.get(key, default)
    if value is not None and not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise InvalidInput(f"{where}: {key!r} must be {names}, not {type(value).__name__}")
    return value


def _identifier(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value.isidentifier() or keyword.iskeyword(value):
        raise InvalidInput(f"{where}: {what} {value!r} is not a Python identifier")
    return value


def _yaml_type(value: Any, where: str) -> ast.expr | None:
    if value is None:
        return None
    return _type_expr(str(value), where)


def _yaml_agent(doc: Any, rel: str) -> _YamlAgent:
    if not isinstance(doc, dict):
        raise InvalidInput(f"{rel}: expected a mapping with 'agent' and 'functions'")
    head = _get(doc, "agent", dict, rel) or {}
    name = _identifier(head.get("name", doc.get("name")), "agent name", rel)
    where = f"{rel}: agent {name}"
    scope = _Scope(None, typing_fallback=True)
    for line in _get(doc, "imports", list, where) or []:
        try:
            nodes = ast.parse(str(line)).body
        except SyntaxError:
            nodes = []
        if not nodes:
            raise InvalidInput(f"{where}: imports: {line!r} is not an import statement")
        for n in nodes:
            if not isinstance(n, ast.Import | ast.ImportFrom) or (
                    isinstance(n, ast.ImportFrom) and n.level):
                raise InvalidInput(f"{where}: imports: {line!r} is not an absolute import")
            scope.add_imports(n, None)
    methods: dict[str, _Method] = {}
    for fn in _get(doc, "functions", list, where) or []:
        if not isinstance(fn, dict):
            raise InvalidInput(f"{where}: each function must be a mapping")
        fname = _identifier(fn.get("name"), "function name", where)
        fwhere = f"{where}, function {fname}"
        if fname.startswith("_") or fname in methods:
            raise InvalidInput(f"{fwhere}: private or repeated function name")
        params: list[_Param] = []
        arg_docs: list[str] = []
        for arg in _get(fn, "arguments", list, fwhere) or []:
            if not isinstance(arg, dict):
                raise InvalidInput(f"{fwhere}: each argument must be a mapping")
            aname = _identifier(arg.get("name"), "argument name", fwhere)
            if aname in {p.name for p in params} or aname == "self":
                raise InvalidInput(f"{fwhere}: argument {aname!r} repeated or reserved")
            default = _default_source(arg["default"]) if "default" in arg else None
            if default is None and params and params[-1].default is not None:
                raise InvalidInput(f"{fwhere}: argument {aname!r} without a default follows "
                                   f"one with a default")
            params.append(_Param(aname, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 _yaml_type(arg.get("type"), f"{fwhere}, argument {aname}"),
                                 default))
            if arg.get("description"):
                arg_docs.append(f"    {aname}: {arg['description']}")
        returns = _get(fn, "returns", (dict, str), fwhere) or {}
        if isinstance(returns, str):
            returns = {"type": returns}
        parts = [str(fn["description"]).strip()] if fn.get("description") else []
        if arg_docs:
            parts.append("\n".join(["Arguments:", *arg_docs]))
        if returns.get("description"):
            parts.append(f"Returns: {returns['description']}")
        methods[fname] = _Method(fname, tuple(params),
                                 _yaml_type(returns.get("type"), f"{fwhere}, returns"),
                                 "\n\n".join(parts) or None)
    description = head.get("description", doc.get("description"))
    return _YamlAgent(name, rel, str(description).strip() if description else None,
                      _hints((k, head[k]) for k in _HINTS if k in head),
                      tuple(methods[k] for k in sorted(methods)), scope)
