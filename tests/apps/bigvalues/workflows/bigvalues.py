"""Workflows whose values are too large for a message: they travel by reference."""

from __future__ import annotations

import hashlib

import nalar
from agents.blobs import Blobs


@nalar.workflow
async def roundtrip(mib: float, seed: int = 7) -> bytes:
    """An agent makes a blob, another reads it, the driver reads it and returns it whole."""
    b = nalar.stub(Blobs)
    made = b.make(mib, seed)
    seen = await b.digest(made)
    data: bytes = await made
    assert seen == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return data


@nalar.workflow
def passed_on(mib: float, seed: int = 3) -> dict[str, object]:
    """The driver never reads the blob: it hands the future to the next call."""
    b = nalar.stub(Blobs)
    return b.digest(b.make(mib, seed)).value(timeout=300)


@nalar.workflow
def big_arguments(mib: float, rows: int) -> dict[str, object]:
    """Arguments built in the driver, each too large for a message (a sync driver)."""
    text = ("nalar " * (int(mib * (1 << 20)) // 6 + 1))[:int(mib * (1 << 20))]
    table = {"rows": [{"n": i, "name": f"row-{i}", "tags": ["a", "b"]} for i in range(rows)]}
    return nalar.stub(Blobs).measure(text, table=table).value(timeout=120)


@nalar.workflow
def text_and_table(mib: float, rows: int) -> dict[str, object]:
    b = nalar.stub(Blobs)
    text, table = b.text(mib), b.table(rows)
    return {"text": text.value(timeout=120), "table": table.value(timeout=120)}


@nalar.workflow
def pair(mib: float) -> list[str]:
    """Two results that each fit a message, but not both in one dispatch."""
    b = nalar.stub(Blobs)
    return b.both(b.make(mib, 1), b.make(mib, 2)).value(timeout=120)


@nalar.workflow
async def by_reference(mib: float, seed: int = 4) -> dict[str, object]:
    """A driver passes on a reference it holds (`Future.reference`): the agent gets bytes."""
    b = nalar.stub(Blobs)
    made = b.make(mib, seed)
    await made
    return await b.digest(made.reference)


@nalar.workflow
async def signalled() -> dict[str, object]:
    """A signal's value too large for a message reaches the driver as itself."""
    text = await nalar.signal("text")
    return await nalar.stub(Blobs).measure(text)


@nalar.workflow
async def published(mib: float, seed: int = 9) -> dict[str, object]:
    b = nalar.stub(Blobs)
    return await b.digest(b.publish(mib, seed))


@nalar.workflow
async def mixed() -> int:
    b = nalar.stub(Blobs)
    value = await b.mixed()
    return len(value["raw"])
