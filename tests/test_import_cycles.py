"""No package imports itself in a circle: every `import` in every module (function-level
ones included, since a function-level import is how a cycle gets hidden; `TYPE_CHECKING`
blocks left out) makes an edge, and the graph of each package has no strongly connected
component larger than one module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import nalar.hosting
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted([p for p in (ROOT / "libs").glob("*/src/*") if (p / "__init__.py").exists()]
                  + [p for p in (ROOT / "services").glob("*/src/*")
                     if (p / "__init__.py").exists()])


def modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path) -> Iterator[str]:
    """Every module name an import statement of the module names (with `from x import y`:
    both `x` and `x.y`, since `y` may be a submodule)."""
    tree = ast.parse(path.read_text())
    hidden = {id(sub) for node in ast.walk(tree) if isinstance(node, ast.If)
              and "TYPE_CHECKING" in ast.unparse(node.test) for sub in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            module = (f"{base}.{node.module}" if node.module else base) if node.level \
                else node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def graph(package: Path) -> dict[str, set[str]]:
    mods = modules(package)
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for target in imported(name, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        edges[name] = deps
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walk_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_it_reads_function_level_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import x\n")
    (pkg / "b.py").write_text("def x():\n    from pkg import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from pkg import a\n")
    assert cycles(graph(pkg)) == [["pkg.a", "pkg.b"]]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_import_cycle(package: Path) -> None:
    assert cycles(graph(package)) == []


def test_the_agent_host_uses_the_sdk_only_through_its_hosting_surface() -> None:
    """The host runs user code with what `nalar.hosting` gives it, never the SDK's other
    internals (the user API is `nalar`, the command line `nalar.cli`)."""
    host = next(p for p in PACKAGES if p.name == "nalar_agent_host")
    used = {m for name, path in modules(host).items() for m in imported(name, path)
            if m == "nalar" or m.startswith("nalar.")}
    surface = {"nalar.hosting"} | {f"nalar.hosting.{n}" for n in nalar.hosting.__all__}
    assert used and used <= surface
