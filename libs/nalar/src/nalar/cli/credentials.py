"""Where clients find their API key: `NALAR_API_KEY`, else the file `NALAR_API_KEY_FILE`
names, else `.nalar/api-key` in the current directory (the embedded stack writes it there)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_KEY_FILE = Path(".nalar") / "api-key"


def api_key() -> str | None:
    key = os.environ.get("NALAR_API_KEY", "").strip()
    if key:
        return key
    path = Path(os.environ.get("NALAR_API_KEY_FILE", "") or DEFAULT_KEY_FILE)
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def auth_headers() -> dict[str, str]:
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}
