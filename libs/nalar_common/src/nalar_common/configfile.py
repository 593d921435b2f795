"""A YAML config file that services reread while they run (`config/policy.yaml`,
`config/guardrails.yaml`): checked at most once a second, parsed again when its mtime or
size changes; a file that does not parse keeps what is in force and says why (`error`); a
missing file means the empty config."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from nalar_common.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def load_yaml(text: str) -> tuple[Any, str]:
    """(the document, or None for an empty file; its revision: a digest of the text);
    ValueError when it is not YAML."""
    try:
        doc = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    return doc, hashlib.sha256(text.encode()).hexdigest()[:12]


def check_entry(item: Any, known: set[str], where: str, shape: str) -> dict[str, Any]:
    """One entry of a config list: a mapping with only `known` keys, or ValueError."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a mapping with {shape}")
    unknown = set(item) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    return item


class ConfigFile(Generic[T]):
    def __init__(self, path: Path, parse: Callable[[str], T], empty: T, *, what: str,
                 check_every_s: float = 1.0) -> None:
        self.path, self.parse, self.empty, self.what = Path(path), parse, empty, what
        self.check_every_s = check_every_s
        self.value: T = empty
        self.error: str | None = None
        self._stamp: tuple[float, int] | None = None
        self._checked = -1e9

    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            self._reload()
        return self.value

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None:
                log.info(f"{self.what}.removed", path=str(self.path))
            self.value, self.error, self._stamp = self.empty, None, None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.value = self.parse(self.path.read_text())
            self.error = None
            log.info(f"{self.what}.loaded", path=str(self.path),
                     revision=getattr(self.value, "revision", None))
        except (OSError, ValueError) as exc:
            self.error = str(exc)
            log.error(f"{self.what}.invalid", path=str(self.path), error=str(exc),
                      kept=getattr(self.value, "revision", None))
