"""Agents that make and read values too large for one NATS message."""

from __future__ import annotations

import hashlib
import random

import nalar

MIB = 1 << 20


def blob(mib: float, seed: int) -> bytes:
    """`mib` MiB of seeded pseudo-random bytes (the same for the same seed), made a MiB at a
    time (`randbytes` takes at most 2**31 bits at once)."""
    rng, size = random.Random(seed), int(mib * MIB)
    return b"".join(rng.randbytes(min(MIB, size - at)) for at in range(0, size, MIB))


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@nalar.agent(concurrency=4)
class Blobs:
    def make(self, mib: float, seed: int) -> bytes:
        return blob(mib, seed)

    def text(self, mib: float) -> str:
        return ("nalar " * (int(mib * MIB) // 6 + 1))[:int(mib * MIB)]

    def table(self, rows: int) -> dict[str, object]:
        return {"rows": [{"n": i, "name": f"row-{i}", "tags": ["a", "b"]} for i in range(rows)]}

    def digest(self, data: bytes) -> dict[str, object]:
        return {"size": len(data), "sha256": sha(data)}

    @nalar.tool(idempotent=False)
    def publish(self, mib: float, seed: int) -> bytes:
        """A side effect whose large result the idempotency ledger records (by reference)."""
        return blob(mib, seed)

    def mixed(self) -> dict[str, object]:
        return {"raw": b"\x00\x01" * (MIB // 2 + 1), "n": 1}

    def both(self, a: bytes, b: bytes) -> list[str]:
        return [sha(a), sha(b)]

    def measure(self, text: str, *, table: dict[str, object] | None = None) -> dict[str, object]:
        return {"chars": len(text), "sha256": sha(text),
                "rows": len(table["rows"]) if table else 0}  # type: ignore[arg-type]
