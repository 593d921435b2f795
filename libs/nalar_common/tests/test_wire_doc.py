"""docs/protocol.md shows every wire type's fields as the types themselves say them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from nalar_common.calls import CallSpec
from nalar_common.wire import Message, Record
from nalar_common.wire import __main__ as cli
from nalar_common.wire.doc import _CALL_MEANINGS, DOCUMENTED, missing, render, update

PAGE = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def test_the_protocol_page_matches_the_types() -> None:
    text = PAGE.read_text()
    assert missing(text) == []
    assert update(text) == text, (
        "docs/protocol.md differs from the wire types: run "
        "`.venv/bin/python -m nalar_common.wire --update docs/protocol.md`")


def test_every_message_type_is_documented() -> None:
    import nalar_common.wire as wire

    exported = {getattr(wire, n) for n in wire.__all__}
    types = {t for t in exported if isinstance(t, type) and issubclass(t, Record)
             and t not in (Record, Message)}
    assert types | {CallSpec, wire.Done} == set(DOCUMENTED)


def test_a_changed_field_changes_the_page() -> None:
    """The check can fail: a block that says something else is rewritten."""
    text = PAGE.read_text()
    stale = text.replace("| `token` | str | required |", "| `token` | int | required |")
    assert stale != text and update(stale) == text
    assert missing(text.replace("<!-- wire:Done -->", "")) == ["Done"]


def test_every_call_field_has_a_meaning() -> None:
    assert set(_CALL_MEANINGS) == {f.name for f in dataclasses.fields(CallSpec)}


def test_render_names_kind_version_and_required_fields() -> None:
    from nalar_common.wire import Dispatch

    block = render(Dispatch)
    assert "kind `dispatch`, version 1" in block
    assert "| `call` | bin | required |" in block
    assert "| `deps` | map of str to DepResult | `{}` |" in block


def test_the_command_prints_and_updates(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--doc"]) == 0
    printed = capsys.readouterr().out
    assert all(f"<!-- wire:{t.__name__} -->" in printed for t in DOCUMENTED)
    page = tmp_path / "protocol.md"
    page.write_text(PAGE.read_text().replace("| `token` | str |", "| `token` | ? |"))
    assert cli.main(["--update", str(page)]) == 0
    assert page.read_text() == PAGE.read_text()
    page.write_text("no blocks here\n")
    assert cli.main(["--update", str(page)]) == 1
    assert "no single block for CallSpec" in capsys.readouterr().err
