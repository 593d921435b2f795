"""Stub classes from Python agent classes: their methods' signatures, with annotations
as the source wrote them and the imports they need."""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nalar.registry import AgentSpec
from nalar.stubgen.model import (
    _HINTS,
    _RESERVED,
    _Agent,
    _default_source,
    _hints,
    _Import,
    _Method,
    _names,
    _Param,
    _type_expr,
)


@dataclass
class _Scope:
    """What the top level of a module binds: how to import the names its annotations use."""

    module: str | None
    imports: dict[str, list[_Import]] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)
    star: list[_Import] = field(default_factory=list)
    typing_fallback: bool = False

    def resolve(self, names: Iterable[str], own: frozenset[str]) -> set[_Import]:
        out: set[_Import] = set()
        unresolved = False
        for name in sorted(names):
            if name in own or name in _RESERVED:
                continue
            if name in self.imports:
                out.update(self.imports[name])
            elif name in self.defined and self.module is not None:
                out.add(_Import(self.module, name))
            elif self.typing_fallback and name in typing.__all__:
                out.add(_Import("typing", name))
            elif not hasattr(builtins, name):
                unresolved = True
        if unresolved:
            out.update(self.star)
        return out

    def add_imports(self, node: ast.Import | ast.ImportFrom, package: str | None) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                self.defined.discard(bound)
                self.imports.setdefault(bound, []).append(_Import(a.name, None, a.asname))
            return
        if node.module == "__future__":
            return
        module = node.module or ""
        if node.level:
            module = importlib.util.resolve_name("." * node.level + module, package)
        for a in node.names:
            if a.name == "*":
                self.star.append(_Import(module, "*"))
                continue
            bound = a.asname or a.name
            self.defined.discard(bound)
            self.imports[bound] = [_Import(module, a.name, a.asname)]

    @classmethod
    def of_module(cls, module: types.ModuleType | None, name: str) -> _Scope:
        scope = cls(name)
        if module is None:
            return scope
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError, SyntaxError):
            scope.defined = {n for n in vars(module) if not n.startswith("_")}
            return scope
        for node in _top_level(tree.body):
            if isinstance(node, ast.Import | ast.ImportFrom):
                scope.add_imports(node, module.__package__)
                continue
            bound: list[str] = []
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                bound = [node.name]
            elif isinstance(node, ast.Assign):
                bound = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                bound = [node.target.id]
            for name in bound:
                scope.imports.pop(name, None)
                scope.defined.add(name)
        return scope


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including the first branch of `if TYPE_CHECKING:` or `try:`."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):
            yield from _top_level(node.body)


def _source_annotations(fn: Callable[..., Any]) -> dict[str, str]:
    """Annotations as written in `fn`'s source (for modules without `from __future__ import
    annotations`, where the signature holds objects, not text)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return {}
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return {}
    a = node.args
    args = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x)]
    out = {x.arg: ast.unparse(x.annotation) for x in args if x.annotation is not None}
    if node.returns is not None:
        out["return"] = ast.unparse(node.returns)
    return out


def _python_method(spec: AgentSpec, name: str, source: str) -> tuple[_Method, str]:
    """One agent method as a stub method, and the module whose names its annotations use."""
    sig = spec.methods[name].signature
    raw = inspect.getattr_static(spec.cls, name)
    fn = inspect.unwrap(raw.__func__ if isinstance(raw, staticmethod) else raw)
    params = list(sig.parameters.values())
    if params and not isinstance(raw, staticmethod):
        params = params[1:]  # self
    written: dict[str, str] = {}

    def annotation(key: str, value: Any) -> ast.expr | None:
        if value is inspect.Parameter.empty:
            return None
        if not isinstance(value, str):
            if not written:
                written.update(_source_annotations(fn))
            value = written.get(key) or inspect.formatannotation(value)
        return _type_expr(value, f"{source}: {spec.cls.__name__}.{name} ({key})")

    ps = tuple(_Param(p.name, p.kind, annotation(p.name, p.annotation),
                      None if p.default is p.empty else _default_source(p.default))
               for p in params)
    method = _Method(name, ps, annotation("return", sig.return_annotation),
                     spec.methods[name].doc)
    return method, str(fn.__module__)


def _python_agent(spec: AgentSpec, source: str, scopes: dict[str, _Scope],
                  own: frozenset[str]) -> _Agent:
    methods: list[_Method] = []
    imports: set[_Import] = set()
    for name in sorted(spec.methods):
        method, module = _python_method(spec, name, source)
        if module not in scopes:
            scopes[module] = _Scope.of_module(sys.modules.get(module), module)
        names = _names([p.annotation for p in method.params] + [method.returns])
        imports |= scopes[module].resolve(names, own)
        methods.append(method)
    return _Agent(spec.cls.__name__, spec.name, source, inspect.getdoc(spec.cls),
                  _hints((k, getattr(spec, k)) for k in _HINTS if hasattr(spec, k)),
                  tuple(methods), frozenset(imports))
