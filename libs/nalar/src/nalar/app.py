"""Loading a Nalar app directory: `agents/*.py` and `workflows/*.py` (plain modules).

The app directory goes on `sys.path`, so workflows import agents as `from agents.x import X`.
An app with agent loops (`nalar.AgentLoop`, workflows too) or module-level `@nalar.tool`
functions also gets the built-in agents they call: `llm` and `tools` (nalar.loop.builtin).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nalar_common.errors import InvalidInput

from nalar.agentgraph.loader import load_graphs
from nalar.agentgraph.runner import GraphWorkflow
from nalar.apppackages import bind_package, forget_package
from nalar.loop import LLM, TOOLS_ATTR, Conversations, function_tools_agent
from nalar.registry import METHOD_ATTR, AgentSpec, WorkflowSpec, agent_spec, workflow_spec


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


APP_PACKAGES = ("agents", "workflows", "stubs")


def load_app(path: str | Path) -> App:
    root = Path(path).resolve()
    if not root.is_dir():
        raise InvalidInput(f"app directory {root} does not exist")
    for pkg in APP_PACKAGES:
        forget_package(pkg)
    importlib.invalidate_caches()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for pkg in APP_PACKAGES:
        bind_package(root, pkg)
    app = App(path=root)
    loops: list[Any] = []
    functions: dict[str, Callable[..., Any]] = {}
    for modname in _module_names(root, "agents") + _module_names(root, "workflows"):
        module = importlib.import_module(modname)
        for _, obj in inspect.getmembers(module):
            if (a := agent_spec(obj)) is not None:
                app.agents.setdefault(a.name, a)
            elif (w := workflow_spec(obj)) is not None:
                app.workflows.setdefault(w.name, w)
                if getattr(obj, TOOLS_ATTR, None) is not None:
                    loops.append(obj)
            elif inspect.isfunction(obj) and obj.__module__ == modname and \
                    getattr(obj, METHOD_ATTR, {}).get("tool"):
                _add_function(functions, obj)
    for name, versions in load_graphs(root).items():  # graphs/*.yaml: workflows too
        if name in app.workflows:
            raise InvalidInput(f"graph {name!r} (graphs/) has the name of a workflow")
        graph = GraphWorkflow(versions)
        app.workflows[name] = workflow_spec(graph)  # type: ignore[assignment]
        loops.append(graph)
    _add_builtins(app, loops, functions)
    return app


def _add_function(functions: dict[str, Callable[..., Any]], fn: Callable[..., Any]) -> None:
    known = functions.setdefault(fn.__name__, fn)
    if known is not fn:
        raise InvalidInput(f"two function tools are named {fn.__name__!r} "
                           f"({known.__module__} and {fn.__module__}): `tools.{fn.__name__}` "
                           "must name one")


def _add_builtins(app: App, loops: list[Any], functions: dict[str, Callable[..., Any]]) -> None:
    """The `llm` agent for the loops' turns, the `tools` agent for function tools (those
    defined at module level and those the loops list, in loops they use as tools too). A
    loop is any workflow with `TOOLS_ATTR`: an `AgentLoop`, or an agent of another
    framework adapted to run on Nalar."""
    seen: set[int] = set()
    while loops:
        loop = loops.pop()
        if id(loop) in seen:
            continue
        seen.add(id(loop))
        for tool in getattr(loop, TOOLS_ATTR).values():
            if tool.fn is not None:
                _add_function(functions, tool.fn)
            if tool.loop is not None:
                loops.append(tool.loop)
    builtins = ([agent_spec(LLM), agent_spec(Conversations)] if seen else []) + \
        ([agent_spec(function_tools_agent(functions))] if functions else [])
    for spec in builtins:
        assert spec is not None
        if spec.name in app.agents and app.agents[spec.name].cls is not spec.cls:
            raise InvalidInput(f"agent name {spec.name!r} is the built-in agent of agent loops "
                               f"and function tools: rename {app.agents[spec.name].cls.__name__}")
        app.agents[spec.name] = spec
