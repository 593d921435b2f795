"""`nalar stubs APP_DIR [--check]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nalar_common.errors import NalarError

from nalar.stubgen.generate import generate_stubs, stale_stubs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `nalar stubs APP_DIR [--check]` to the `nalar` command."""
    p = subparsers.add_parser(
        "stubs", help="write typed stubs of an app's agents into APP_DIR/stubs/",
        description="Write typed stubs of the agents in APP_DIR/agents/ (classes and YAML "
                    "interface files) into APP_DIR/stubs/: each method returns Future[T].")
    p.add_argument("app_dir", nargs="?", default="app", metavar="APP_DIR",
                   help="app directory (agents/, workflows/); default: app")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the stubs are out of date")
    p.set_defaults(fn=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        changed = stale_stubs(args.app_dir) if args.check else generate_stubs(args.app_dir)
    except NalarError as exc:
        print(f"nalar stubs: {exc.message}", file=sys.stderr)
        return 2
    for path in changed:
        verb = "stale" if args.check else "wrote" if path.exists() else "removed"
        print(f"{verb} {_shown(path)}")
    if not changed:
        print(f"{_shown(Path(args.app_dir).resolve() / 'stubs')} is up to date")
    return 1 if args.check and changed else 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
