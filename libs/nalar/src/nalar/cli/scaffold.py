"""`nalar new DIR`: a new app project (agents, a workflow, config notes, a README and a test that
passes) written from the templates shipped in `nalar/templates/project/`.

Templates end in `.tmpl`, so pytest, ruff and mypy of this package never take them for code;
`{{name}}` in them becomes the project's title.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from nalar_common.errors import Conflict, NalarError

SUFFIX = ".tmpl"
RENAMED = {"gitignore": ".gitignore"}  # no dot files inside the package: tools skip or hide them
PROJECT_EXISTS = "project_exists"  # the code of the `Conflict` raised for a taken target


def _templates() -> list[tuple[str, Traversable]]:
    """(path relative to the project, template) for every template, sorted by path."""
    root = resources.files("nalar") / "templates" / "project"
    found: list[tuple[str, Traversable]] = []
    stack: list[tuple[str, Traversable]] = [("", root)]
    while stack:
        prefix, node = stack.pop()
        for child in node.iterdir():
            if child.is_dir():
                stack.append((f"{prefix}{child.name}/", child))
            elif child.name.endswith(SUFFIX):
                name = child.name[: -len(SUFFIX)]
                found.append((prefix + RENAMED.get(name, name), child))
    if not found:
        raise NalarError(f"no project templates in {root}: the nalar installation is incomplete")
    return sorted(found, key=lambda item: item[0])


def _check_target(target: Path) -> None:
    if target.is_dir():
        entries = sorted(p.name for p in target.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise Conflict(f"{target} exists and is not empty ({shown})", code=PROJECT_EXISTS,
                           details={"path": str(target), "entries": entries})
    elif target.exists():
        raise Conflict(f"{target} exists and is not a directory", code=PROJECT_EXISTS,
                       details={"path": str(target), "entries": []})


def create_project(target: Path, *, name: str | None = None) -> list[Path]:
    """Write a new project into `target` (created if missing, or an empty directory) and return
    the files written. `name` titles the README (default: the directory's name). Raises
    `Conflict` with code `project_exists` and `details` {path, entries} before writing
    anything if `target` is a file or a directory that holds anything."""
    target = Path(target).expanduser().resolve()
    _check_target(target)
    title = name or target.name
    templates = _templates()
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for rel, template in templates:
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.read_text(encoding="utf-8").replace("{{name}}", title),
                        encoding="utf-8")
        written.append(path)
    return written


def next_steps(shown_dir: str) -> str:
    """What to do after `nalar new`, as printed by the command."""
    d = shlex.quote(shown_dir)
    return "\n".join([
        "Next steps:",
        f"  cd {d}",
        "  python -m pytest tests -q          # the example's own tests, in local mode",
        "  nalar run --local . answer '{\"input\": {\"question\": \"What is a future?\"}}'",
        "  nalar up --app .                   # serve it on http://127.0.0.1:8080",
        "  (README.md has the rest: curl, sessions, how to add agents and workflows)",
    ])


def _new(args: argparse.Namespace) -> int:
    root = Path(args.dir).expanduser().resolve()
    try:
        files = create_project(root, name=args.name)
    except Conflict as exc:
        print(f"nalar new: {exc.message}; choose a new or empty directory", file=sys.stderr)
        return 2
    print(f"Created {args.name or root.name} in {root}:")
    for path in files:
        print(f"  {path.relative_to(root)}")
    print()
    print(next_steps(args.dir))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `nalar new DIR [--name TITLE]` to the `nalar` command."""
    new = subparsers.add_parser(
        "new", help="create a new app project (agents/, workflows/, config/, tests/)",
        description="Create a new app project in DIR, which must be new or empty.")
    new.add_argument("dir", metavar="DIR", help="directory of the new project")
    new.add_argument("--name", default=None,
                     help="project title, used in its README (default: the directory's name)")
    new.set_defaults(fn=_new)
