"""Loading a Nalar app directory: `agents/*.py` and `workflows/*.py` (plain modules).

The app directory goes on `sys.path`, so workflows import agents as `from agents.x import X`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nalar_common.errors import InvalidInput

from nalar.registry import AgentSpec, WorkflowSpec, agent_spec, workflow_spec


@dataclass
class App:
    path: Path
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    workflows: dict[str, WorkflowSpec] = field(default_factory=dict)


def _module_names(root: Path, package: str) -> list[str]:
    folder = root / package
    if not folder.is_dir():
        return []
    return [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]


def load_app(path: str | Path) -> App:
    root = Path(path).resolve()
    if not root.is_dir():
        raise InvalidInput(f"app directory {root} does not exist")
    for pkg in ("agents", "workflows", "stubs"):
        for mod in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
            del sys.modules[mod]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    app = App(path=root)
    for modname in _module_names(root, "agents") + _module_names(root, "workflows"):
        module = importlib.import_module(modname)
        for _, obj in inspect.getmembers(module):
            if (a := agent_spec(obj)) is not None:
                app.agents.setdefault(a.name, a)
            elif (w := workflow_spec(obj)) is not None:
                app.workflows.setdefault(w.name, w)
    return app
