"""A YAML config file that services reread while they run (`config/policy.yaml`,
`config/guardrails.yaml`), failing closed: at start a missing, empty or invalid file stops
the service with the file and line (`ConfigError`); at run time a bad edit or a deleted file
keeps the last good rules in force and logs a warning. Only an explicit setting turns a file
off (`ConfigFile.off`)."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from nalar_common.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")


class ConfigError(ValueError):
    """A config file that cannot be used; `str()` names the file and line when known."""

    def __init__(self, reason: str, *, line: int | None = None,
                 path: Path | str | None = None) -> None:
        self.reason, self.line, self.path = reason, line, path
        where = str(path) if path is not None else ""
        if line is not None:
            where = f"{where}, line {line}" if where else f"line {line}"
        super().__init__(f"{where}: {reason}" if where else reason)

    def at(self, path: Path | str) -> ConfigError:
        return ConfigError(self.reason, line=self.line, path=path)


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its data, its revision (a digest of the text), and where each
    item of its top-level lists starts (for errors that name a line)."""

    data: Any
    revision: str
    lines: dict[str, list[int]]

    def line_of(self, key: str, index: int | None = None) -> int | None:
        found = self.lines.get(key) or []
        if index is None:
            return found[0] if found else None
        return found[index + 1] if index + 1 < len(found) else None


def load_yaml(text: str) -> Document:
    """The document of a non-empty YAML text; ConfigError (with the line) when the text is
    empty or not YAML."""
    if not text.strip():
        raise ConfigError("the file is empty (write the rules in it, or turn it off "
                          "explicitly: docs/configuration.md)", line=1)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML: {problem}",
                          line=mark.line + 1 if mark is not None else None) from None
    if data is None:
        raise ConfigError("the file holds no settings (only comments?)", line=1)
    lines: dict[str, list[int]] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            items = value.value if isinstance(value, yaml.SequenceNode) else []
            lines[str(key.value)] = [key.start_mark.line + 1] + \
                [item.start_mark.line + 1 for item in items]
    return Document(data, hashlib.sha256(text.encode()).hexdigest()[:12], lines)


def check_entry(item: Any, known: set[str], where: str, shape: str,
                line: int | None = None) -> dict[str, Any]:
    """One entry of a config list: a mapping with only `known` keys, or ConfigError."""
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: a mapping with {shape}", line=line)
    unknown = set(item) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})",
                          line=line)
    return item


class ConfigFileSettings(BaseSettings):
    """How often a running service looks at its config files again (`NALAR_CONFIG_`)."""

    model_config = SettingsConfigDict(env_prefix="NALAR_CONFIG_", extra="ignore")

    check_s: float | None = Field(default=None, ge=0, description="Seconds between two looks "
                                  "at a config file (its mtime, size and inode); unset: each "
                                  "file's own (1 s); 0: every use looks, so an edit is in "
                                  "force from the next request on (test stacks)")


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_mtime_ns, st.st_size, st.st_ino


class ConfigFile(Generic[T]):
    """The value in force from `path`: `require()` loads it at start (or raises),
    `current()` rereads it when its mtime, size or inode changes (checked at most every
    `check_every_s`). Until a first good load the value is `initial`, which callers make
    the closed one (deny everything)."""

    def __init__(self, path: Path, parse: Callable[[str], T], initial: T, *, what: str,
                 check_every_s: float = 1.0) -> None:
        self.path, self.parse, self.what = Path(path), parse, what
        self.check_every_s = check_every_s
        self.value: T = initial
        self.error: str | None = None
        self.enabled = True
        self._stamp: tuple[int, int, int] | None = None
        self._checked = -1e9

    def turn_off(self, value: T) -> None:
        """Serve `value` for good and never read the file (an explicit setting's choice)."""
        self.value, self.enabled = value, False

    def require(self) -> T:
        """Load the file now; ConfigError naming the file (and line) when it is missing,
        empty or invalid. What a service calls before it starts serving."""
        if not self.enabled:
            return self.value
        try:
            st = os.stat(self.path)
            text = self.path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot be read ({exc.strerror or exc})",
                              path=self.path) from None
        try:
            self.value = self.parse(text)
        except ConfigError as exc:
            raise exc.at(self.path) from None
        except ValueError as exc:
            raise ConfigError(str(exc), path=self.path) from None
        self._stamp, self.error = _stamp(st), None
        self._checked = time.monotonic()
        log.info(f"{self.what}.loaded", path=str(self.path),
                 revision=getattr(self.value, "revision", None))
        return self.value

    def current(self) -> T:
        if self.enabled:
            now = time.monotonic()
            if now - self._checked >= self.check_every_s:
                self._checked = now
                self._reload()
        return self.value

    def _reload(self) -> None:
        kept = getattr(self.value, "revision", None)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.error != "removed":
                self.error = "removed"
                log.warning(f"{self.what}.removed", path=str(self.path), kept=kept)
            self._stamp = None
            return
        stamp = _stamp(st)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.value = self.parse(self.path.read_text())
            self.error = None
            log.info(f"{self.what}.loaded", path=str(self.path),
                     revision=getattr(self.value, "revision", None))
        except (OSError, ValueError) as exc:
            self.error = str(exc.at(self.path) if isinstance(exc, ConfigError) else exc)
            log.warning(f"{self.what}.invalid", path=str(self.path), error=self.error,
                        kept=kept)


OFF = "none"  # the setting's value that turns a file off


def open_config(file: ConfigFile[T], mode: str, setting: str, off: T, *,
                checks: ConfigFileSettings | None = None) -> ConfigFile[T]:
    """`file` loaded now (ConfigError naming the file and line when it cannot be used), or
    serving `off` for good when the setting (`setting`=`mode`) says `none`. `checks` (read
    from the environment when not given: this runs once, as the service starts) may set how
    often the file is looked at again."""
    chosen = mode.strip().lower()
    if chosen == OFF:
        file.turn_off(off)
        return file
    if chosen != "file":
        raise ConfigError(f"{setting} is `file` or `none`, not {mode!r}")
    every = (checks or ConfigFileSettings()).check_s
    if every is not None:
        file.check_every_s = every
    file.require()
    return file


@contextmanager
def config_errors_stop(service: str) -> Iterator[None]:
    """Turn a ConfigError raised while a service loads its config into one clear line on
    stderr and exit code 2 (no traceback)."""
    try:
        yield
    except ConfigError as exc:
        print(f"{service}: refusing to start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
