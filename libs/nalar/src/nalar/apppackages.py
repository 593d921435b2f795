"""An app's packages (`agents/`, `workflows/`, `stubs/`) imported under those names, with or
without an `__init__.py`, even where an installed package has the same name: the OpenAI
Agents SDK's package is named `agents`, and an app directory without `__init__.py` is a
namespace package, which loses to any regular package on the path.

While an app's package is bound, the installed package's top module and those its modules
would shadow are set aside (an app with an `agents/` directory cannot use the SDK in the same
process: docs/openai-agents.md); they come back when the app's are forgotten."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

_bound: dict[str, Path] = {}  # package name -> the app directory bound to it
_aside: dict[str, dict[str, ModuleType]] = {}  # package name -> installed modules set aside


def _modules(pkg: str) -> list[str]:
    return [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]


def forget_package(pkg: str) -> None:
    """Drop the app modules of `pkg` (another app's, or this one's loaded before) and put
    back installed modules set aside for them."""
    folder = _bound.pop(pkg, None)
    for name in _modules(pkg):
        if folder is not None and _inside(sys.modules[name], folder):
            del sys.modules[name]
    sys.modules.update(_aside.pop(pkg, {}))


def bind_package(root: Path, pkg: str) -> None:
    """Make `import <pkg>.x` find `root/<pkg>/`."""
    folder = root / pkg
    if not folder.is_dir():
        return
    forget_package(pkg)
    # the installed package's modules that an app module of the same name would meet in the
    # cache (`agents` itself, `agents.memory` where the app has agents/memory.py) step aside;
    # the rest stay, so code of that package already imported keeps its lazy imports
    aside = {name: sys.modules.pop(name) for name in _modules(pkg)
             if name == pkg or _shadowed(name, pkg, folder)}
    if aside:
        _aside[pkg] = aside
    _bound[pkg] = folder
    init = folder / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(pkg, init,
                                                      submodule_search_locations=[str(folder)])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[pkg] = module
        spec.loader.exec_module(module)
        return
    spec = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    module.__getattr__ = _missing(pkg, folder)  # type: ignore[method-assign]
    sys.modules[pkg] = module


def _shadowed(name: str, pkg: str, folder: Path) -> bool:
    first = name[len(pkg) + 1:].split(".", 1)[0]
    return (folder / f"{first}.py").exists() or (folder / first).is_dir()


def _inside(module: ModuleType, folder: Path) -> bool:
    where = [getattr(module, "__file__", None) or "",
             *(getattr(module, "__path__", None) or ())]
    return any(str(w).startswith(str(folder)) for w in where if w)


def _missing(pkg: str, folder: Path) -> Callable[[str], Any]:
    def attr(name: str) -> Any:
        if name.startswith("_"):  # what tools probe for (getattr with a default, hasattr)
            raise AttributeError(name)
        if (folder / f"{name}.py").exists() or (folder / name).is_dir():
            return importlib.import_module(f"{pkg}.{name}")
        sdk = (" (an installed package of that name, such as the OpenAI Agents SDK's, "
               "cannot be imported by an app with an agents/ directory: keep that code out of "
               "agents/, docs/openai-agents.md)") if pkg == "agents" else ""
        # an ImportError, not an AttributeError, so that `from agents import Runner` says why
        raise ImportError(f"{pkg!r} is this app's {pkg}/ directory ({folder}), which has "
                             f"no {name!r}{sdk}")
    return attr
