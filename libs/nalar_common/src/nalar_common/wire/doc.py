"""The tables of docs/protocol.md, made from the message types themselves, so the page
cannot drift from the code: `python -m nalar_common.wire --update docs/protocol.md` rewrites
each block between `<!-- wire:Name -->` and `<!-- /wire:Name -->`, and a test fails when the
page differs from what this makes."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, get_type_hints

from nalar_common.calls import CallSpec
from nalar_common.envelope import VERSION as ENVELOPE_VERSION
from nalar_common.wire.control import ControlReply, ControlRequest
from nalar_common.wire.dispatch import VERSION_HEADER, DepResult, Dispatch, Done
from nalar_common.wire.guard import GuardAnswer, GuardReserve, GuardSettle
from nalar_common.wire.record import Field, Message, Record
from nalar_common.wire.result import Result
from nalar_common.wire.telemetry import InstanceLoad, Telemetry

DOCUMENTED: tuple[type, ...] = (
    CallSpec, Result, Dispatch, DepResult, Done, ControlRequest, ControlReply, GuardReserve,
    GuardSettle, GuardAnswer, Telemetry, InstanceLoad)
"""Every type with a block in docs/protocol.md, in page order."""

# CallSpec (nalar_common.calls) predates these types and carries no field metadata yet
_CALL_MEANINGS = {
    "run": "run id",
    "future": "future id",
    "session": "session id (`\"\"`: none)",
    "agent": "agent name; `_driver` for a workflow driver",
    "method": "method name; the workflow name for a driver",
    "args": "positional arguments, FutureRefs in place of futures",
    "kwargs": "keyword arguments (a driver's run input)",
    "deps": "same as `Nalar-Deps`",
    "parent": "same as `Nalar-Parent`",
    "priority": "same as `Nalar-Priority`",
    "attempt": "same as `Nalar-Attempt` when it was published",
    "hop": "part of `Nats-Msg-Id`; forwarding changes only the headers",
    "deadline": "unix s; nil: none",
    "created_at": "unix s when the call was made",
    "node": "reserved, `\"\"`",
}


def _fields(cls: type) -> tuple[Field, ...]:
    if issubclass(cls, Record):
        return cls.fields()
    hints = get_type_hints(cls)
    found = dataclasses.fields(cls)  # type: ignore[arg-type]
    return tuple(Field(f, hints[f.name]) for f in found)


def _default(f: Field) -> str:
    if f.required:
        return "required"
    value: Any = f.empty
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | tuple):
        return "`[]`" if not value else f"`{list(value)!r}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _summary(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def render(cls: type) -> str:
    """The block for one type, markers included."""
    name = cls.__name__
    if cls is Done:
        lines = [f"`nalar_common.wire.Done`, headers on an empty body, version {Done.VERSION} "
                 f"(a newer one adds `{VERSION_HEADER}`). {_summary(cls)}",
                 "", "| header | field | type | sent | meaning |", "|---|---|---|---|---|"]
        for f in _fields(cls):
            meta = next(x for x in dataclasses.fields(cls) if x.name == f.name).metadata
            typ = f.desc.removesuffix(" or nil")
            typ = f"{typ} as text" if typ in ("int", "float") else typ
            lines.append(f"| `{meta['header']}` | `{f.name}` | {_cell(typ)} | "
                         f"{'when set' if f.default is None else 'always'} | "
                         f"{_cell(f.doc)} |")
    else:
        if cls is CallSpec:
            head = (f"`nalar_common.calls.CallSpec`, kind `call`, version "
                    f"{ENVELOPE_VERSION}.")
        elif issubclass(cls, Message):
            head = f"`nalar_common.wire.{name}`, kind `{cls.KIND}`, version {cls.VERSION}."
        else:
            head = f"`nalar_common.wire.{name}`, a map inside a body."
        lines = [f"{head} {_summary(cls)}", "", "| field | type | default | meaning |",
                 "|---|---|---|---|"]
        for f in _fields(cls):
            doc = _CALL_MEANINGS[f.name] if cls is CallSpec else f.doc
            lines.append(f"| `{f.name}` | {_cell(f.desc)} | {_default(f)} | {_cell(doc)} |")
    return "\n".join([f"<!-- wire:{name} -->", *lines, f"<!-- /wire:{name} -->"])


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- wire:{name} -->\n.*?<!-- /wire:{name} -->", re.DOTALL)


def update(text: str) -> str:
    """`text` with every block it has made anew (blocks it lacks are not added)."""
    for cls in DOCUMENTED:
        found = _block(cls.__name__).search(text)
        if found is not None:
            text = text[:found.start()] + render(cls) + text[found.end():]
    return text


def missing(text: str) -> list[str]:
    """Types without exactly one block in `text`."""
    return [cls.__name__ for cls in DOCUMENTED
            if len(_block(cls.__name__).findall(text)) != 1]


def render_all() -> str:
    return "\n\n".join(render(cls) for cls in DOCUMENTED)
