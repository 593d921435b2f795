"""Rendering stub modules: one class per agent whose methods return `Future[T]`."""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from nalar.stubgen.model import (
    _DEFAULT,
    _HELPER,
    _LINE,
    _POSITIONAL,
    HEADER,
    _Agent,
    _Import,
    _Method,
    _names,
)

_INIT = f'''{HEADER} — do not edit.
"""Typed stubs of this app's agents: `from stubs.<module> import <Agent>`."""
'''

_HELPER_SOURCE = f'''
{_DEFAULT}: Any = object()  # an argument left out: the agent applies its own default


def {_HELPER}(
    positional: list[tuple[str | None, Any]], keywords: dict[str, Any],
) -> tuple[list[Any], dict[str, Any]]:
    """Drop arguments left at {_DEFAULT}; positional ones after a dropped one go by name."""
    args: list[Any] = []
    kwargs = {{k: v for k, v in keywords.items() if v is not {_DEFAULT}}}
    skipped = False
    for name, value in positional:
        if value is {_DEFAULT}:
            skipped = True
        elif not skipped:
            args.append(value)
        elif name is not None:
            kwargs[name] = value
    return args, kwargs
'''


def _future(t: ast.expr | None) -> ast.expr:
    return ast.Subscript(value=ast.Attribute(value=ast.Name("nalar"), attr="Future"),
                         slice=t if t is not None else ast.Name("Any"))


def _is_any(t: ast.expr) -> bool:
    return ast.unparse(t) in ("Any", "typing.Any")


def _union(members: list[ast.expr]) -> ast.expr:
    out = members[0]
    for m in members[1:]:
        out = ast.BinOp(left=out, op=ast.BitOr(), right=m)
    return out


def _members(t: ast.expr) -> list[ast.expr]:
    if isinstance(t, ast.BinOp) and isinstance(t.op, ast.BitOr):
        return [*_members(t.left), *_members(t.right)]
    return [t]


def _param_type(t: ast.expr | None) -> ast.expr:
    """`T | nalar.Future[T]`: a stub accepts the value or a future of it (a dependency); a
    `None` member of `T` stays last."""
    if t is None or _is_any(t):
        return ast.Name("Any")
    members = _members(t)
    nones = [m for m in members if isinstance(m, ast.Constant) and m.value is None]
    rest = [m for m in members if m not in nones]
    return _union([*rest, _future(t), *nones[:1]])


def _docstring(text: str, indent: str) -> list[str]:
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text = text[:-1] + '\\"'
    lines = text.splitlines() or [""]
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    rest = [f"{indent}{line}".rstrip() for line in lines[1:]]
    return [f'{indent}"""{lines[0]}', *rest, f'{indent}"""']


def _wrapped(head: str, items: list[str], tail: str, indent: str) -> list[str]:
    """`head(a, b)tail` on one line if it fits, else one item a line (black's layout)."""
    one = f"{indent}{head}{', '.join(items)}{tail}"
    if len(one) <= _LINE or not items:
        return [one]
    return [f"{indent}{head}", *(f"{indent}    {i}," for i in items), f"{indent}{tail}"]


def _signature(m: _Method) -> list[str]:
    items = ["self"]
    kinds = [p.kind for p in m.params]
    for i, p in enumerate(m.params):
        if p.kind is inspect.Parameter.KEYWORD_ONLY and inspect.Parameter.VAR_POSITIONAL \
                not in kinds and (i == 0 or kinds[i - 1] is not p.kind):
            items.append("*")
        star = ("*" if p.kind is inspect.Parameter.VAR_POSITIONAL
                else "**" if p.kind is inspect.Parameter.VAR_KEYWORD else "")
        item = f"{star}{p.name}: {ast.unparse(_param_type(p.annotation))}"
        items.append(item if p.default is None else f"{item} = {p.default}")
        if p.kind is inspect.Parameter.POSITIONAL_ONLY and (
                i + 1 == len(kinds) or kinds[i + 1] is not p.kind):
            items.append("/")
    return _wrapped(f"def {m.name}(", items, f") -> {ast.unparse(_future(m.returns))}:",
                    "    ")


def _body(m: _Method) -> list[str]:
    call = f'return super().__getattr__("{m.name}")('
    if not any(p.default == _DEFAULT for p in m.params):
        args = []
        for p in m.params:
            if p.kind in _POSITIONAL:
                args.append(p.name)
            elif p.kind is inspect.Parameter.VAR_POSITIONAL:
                args.append(f"*{p.name}")
            elif p.kind is inspect.Parameter.KEYWORD_ONLY:
                args.append(f"{p.name}={p.name}")
            else:
                args.append(f"**{p.name}")
        return _wrapped(call, args, ")", "        ")
    positional, keywords = [], []
    for p in m.params:
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional.append(f"(None, {p.name})")
        elif p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            positional.append(f'("{p.name}", {p.name})')
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            positional.append(f"*((None, v) for v in {p.name})")
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            keywords.append(f'"{p.name}": {p.name}')
        else:
            keywords.append(f"**{p.name}")
    pos = _wrapped("[", positional, "],", "            ")
    kw = _wrapped("{", keywords, "},", "            ")
    return [f"        _args, _kwargs = {_HELPER}(", *pos, *kw, "        )",
            f"        {call}*_args, **_kwargs)"]


def _class(agent: _Agent) -> list[str]:
    intro = f"Typed stub of agent {json.dumps(agent.agent_name)}, from {agent.source}."
    parts = [textwrap.fill(intro, _LINE - 8)]
    if agent.hints:
        parts.append(textwrap.fill(agent.hints, _LINE - 8))
    if agent.doc:
        parts.append(agent.doc)
    lines = [f"class {agent.cls_name}(nalar.Stub):", *_docstring("\n\n".join(parts), "    "),
             "", "    if TYPE_CHECKING:  # no dynamic attributes: a misspelt method is an error",
             "        __getattr__: None  # type: ignore[assignment, misc]",
             "", "    def __init__(self) -> None:",
             f"        super().__init__({json.dumps(agent.agent_name)})"]
    for m in agent.methods:
        lines += ["", *_signature(m)]
        if m.doc:
            lines += _docstring(m.doc, "        ")
        lines += _body(m)
    return lines


def _import_lines(imports: Iterable[_Import], local: set[str], indent: str) -> list[str]:
    """isort's layout: stdlib, third party, then the app's own packages; `import` before
    `from`; constants, classes, then the rest."""
    def section(i: _Import) -> int:
        top = i.module.split(".")[0]
        return 0 if top in sys.stdlib_module_names else 2 if top in local else 1

    def order(name: str) -> tuple[int, str, str]:
        kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
        return kind, name.lower(), name

    out: list[str] = []
    for s in range(3):
        group = [i for i in imports if section(i) == s]
        if not group:
            continue
        if out:
            out.append("")
        out += sorted(f"{indent}import {i.module}" + (f" as {i.alias}" if i.alias else "")
                      for i in group if i.name is None)
        froms: dict[str, set[_Import]] = {}
        for i in group:
            if i.name is not None:
                froms.setdefault(i.module, set()).add(i)
        for module in sorted(froms):
            # one statement for the plain names, one per `as` (ruff's default), each placed
            # by its first name
            plain = sorted((i.name for i in froms[module] if i.name and not i.alias), key=order)
            statements = [(plain[0], plain)] if plain else []
            statements += [(i.name, [f"{i.name} as {i.alias}"]) for i in froms[module]
                           if i.name and i.alias]
            for _, names in sorted(statements, key=lambda st: order(st[0])):
                one = f"{indent}from {module} import {', '.join(names)}"
                out += [one] if len(one) <= _LINE else [
                    f"{indent}from {module} import (", *(f"{indent}    {n}," for n in names),
                    f"{indent})"]
    return out


@dataclass(frozen=True)
class _Module:
    sources: list[str]
    agents: list[_Agent]

    def render(self, local: set[str]) -> str:
        methods = [m for a in self.agents for m in a.methods]
        used = _names(e for m in methods
                      for e in (_future(m.returns), *(_param_type(p.annotation)
                                                      for p in m.params)))
        helper = any(p.default == _DEFAULT for m in methods for p in m.params)
        typed: set[_Import] = set().union(*(a.imports for a in self.agents))
        names = ["TYPE_CHECKING"] + (["Any"] if "Any" in used or helper else [])
        sources = " and ".join(self.sources)
        lines = [f"{HEADER} from {sources} — do not edit.",
                 f'"""Typed stubs of the agents in {sources}."""', "",
                 "from __future__ import annotations", ""]
        lines += [f"from typing import {', '.join(names)}", "", "import nalar"]
        if typed:
            lines += ["", "if TYPE_CHECKING:", *_import_lines(typed, local, "    ")]
        if helper:
            lines += ["", *_HELPER_SOURCE.strip("\n").split("\n")]
        for agent in self.agents:
            lines += ["", "", *_class(agent)]
        return "\n".join(lines) + "\n"
