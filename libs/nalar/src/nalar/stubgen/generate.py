"""Writing an app's `stubs/`: what to write, what to remove, and never a file that
`nalar stubs` did not write."""

from __future__ import annotations

import os
from pathlib import Path

from nalar_common.errors import InvalidInput

from nalar.stubgen.loader import _importing_app, _python_agents
from nalar.stubgen.model import _APP_PACKAGES, HEADER
from nalar.stubgen.python_source import _python_agent, _Scope
from nalar.stubgen.render import _INIT, _Module
from nalar.stubgen.yaml_source import _yaml_sources


def generate_stubs(app_dir: Path) -> list[Path]:
    """Write `app_dir/stubs/` and return the files written or removed (none when up to date).

    Files whose bytes would not change are left alone; generated files whose source is gone
    are removed; a file there that `nalar stubs` did not write is never overwritten.
    """
    writes, removes = _plan(Path(app_dir))
    for path, text in writes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
    for path in removes:
        path.unlink()
    return sorted([*writes, *removes])


def stale_stubs(app_dir: Path) -> list[Path]:
    """The files `generate_stubs` would write or remove; writes nothing (`nalar stubs --check`)."""
    writes, removes = _plan(Path(app_dir))
    return sorted([*writes, *removes])


def render_stubs(app_dir: Path) -> dict[Path, str]:
    """Every stub file's path and text, from the app's agent modules and YAML interfaces."""
    root = Path(app_dir).resolve()
    if not root.is_dir():
        raise InvalidInput(f"app directory {root} does not exist")
    if not (root / "agents").is_dir():
        raise InvalidInput(f"app directory {root} has no agents/ folder")
    modules: dict[str, _Module] = {}
    with _importing_app(root):
        by_stem = _python_agents(root)
        python_names = {n for specs in by_stem.values()
                        for s in specs for n in (s.name, s.cls.__name__)}
        yaml_by_stem = _yaml_sources(root, python_names)
        scopes: dict[str, _Scope] = {}
        for stem in sorted({*by_stem, *yaml_by_stem}):
            specs = by_stem.get(stem, [])
            yamls = yaml_by_stem.get(stem, [])
            own = frozenset({s.cls.__name__ for s in specs} | {y.cls_name for y in yamls})
            agents = [_python_agent(s, f"agents/{stem}.py", scopes, own) for s in specs]
            agents += [y.build(own) for y in yamls]
            sources = ([f"agents/{stem}.py"] if specs else []) + sorted(
                {y.source for y in yamls})
            modules[stem] = _Module(sources, sorted(agents, key=lambda a: a.cls_name))
    local = {p.name.removesuffix(".py") for p in root.iterdir()} | set(_APP_PACKAGES)
    out = {root / "stubs" / "__init__.py": _INIT}
    for stem, module in modules.items():
        out[root / "stubs" / f"{stem}.py"] = module.render(local)
    return out


def _plan(app_dir: Path) -> tuple[dict[Path, str], list[Path]]:
    files = render_stubs(app_dir)
    writes: dict[Path, str] = {}
    for path, text in files.items():
        if not path.exists():
            writes[path] = text
        elif path.read_text(encoding="utf-8") != text:
            if _is_generated(path):
                writes[path] = text
            elif path.name != "__init__.py":  # a hand-written package marker is fine as it is
                raise InvalidInput(f"{path} was not written by `nalar stubs`; move it away "
                                   f"so the stub can be generated there")
    folder = Path(app_dir).resolve() / "stubs"
    removes = [p for p in sorted(folder.glob("*.py")) if p not in files and _is_generated(p)]
    return writes, removes


def _is_generated(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as f:
        return f.readline().startswith(HEADER)
