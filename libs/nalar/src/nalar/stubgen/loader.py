"""Loading an app's agent modules for generation, with placeholder `stubs.*` modules (agent
modules may import the very stubs being generated)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nalar.apppackages import bind_package, forget_package
from nalar.registry import AgentSpec, agent_spec
from nalar.stub import Stub


class _PlaceholderStubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """While agents are imported for generation, `stubs.*` are placeholders: agent modules may
    import the very stubs being generated, which may be missing or stale."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "stubs" and not fullname.startswith("stubs."):
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _PlaceholderModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self.__name__ == "stubs":
            return importlib.import_module(f"stubs.{name}")

        def init(stub: Stub) -> None:
            Stub.__init__(stub, name)

        return type(name, (Stub,), {"__init__": init})


def _forget_app_modules() -> None:
    for pkg in ("agents", "stubs"):
        forget_package(pkg)


@contextlib.contextmanager
def _importing_app(root: Path) -> Iterator[None]:
    """Import `root/agents` (as `nalar.app.load_app` does) with placeholder stubs; undo after."""
    _forget_app_modules()
    importlib.invalidate_caches()
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    finder = _PlaceholderStubs()
    sys.meta_path.insert(0, finder)
    try:
        bind_package(root, "agents")  # its __init__ may import stubs: the finder is in place
        yield
    finally:
        sys.meta_path.remove(finder)
        if added:
            sys.path.remove(str(root))
        _forget_app_modules()


def _python_agents(root: Path) -> dict[str, list[AgentSpec]]:
    """Agent specs by the stem of the agents/ module that defines them (workflows are not
    imported: they may import stubs that do not exist yet). An agent defined outside agents/
    goes with the first module that imports it."""
    stems = sorted(p.stem for p in (root / "agents").glob("*.py") if p.stem != "__init__")
    modules = {stem: importlib.import_module(f"agents.{stem}") for stem in stems}
    home = {m.__name__: stem for stem, m in modules.items()}
    out: dict[str, list[AgentSpec]] = {}
    seen: set[type] = set()
    for stem, module in modules.items():
        for _, obj in inspect.getmembers(module):
            spec = agent_spec(obj)
            if spec is None or obj in seen:
                continue
            if obj.__module__ in home and home[obj.__module__] != stem:
                continue
            seen.add(obj)
            out.setdefault(home.get(obj.__module__, stem), []).append(spec)
    return out
