"""`ConfigFile` rereads a changed file (mtime, size or inode) on use; `NALAR_CONFIG_CHECK_S`
sets how often it looks, and leaves each file's own interval alone when unset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nalar_common.configfile import ConfigFile, ConfigFileSettings, Document, load_yaml, open_config


def config(path: Path, check_every_s: float = 1.0) -> ConfigFile[Document | None]:
    return ConfigFile(path, load_yaml, None, what="test.config", check_every_s=check_every_s)


def test_the_file_keeps_its_own_interval_unless_the_setting_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")
    monkeypatch.delenv("NALAR_CONFIG_CHECK_S", raising=False)
    assert open_config(config(path, 7.0), "file", "X", None).check_every_s == 7.0
    monkeypatch.setenv("NALAR_CONFIG_CHECK_S", "0")
    assert open_config(config(path, 7.0), "file", "X", None).check_every_s == 0.0
    given = ConfigFileSettings(check_s=2.5)
    assert open_config(config(path), "file", "X", None, checks=given).check_every_s == 2.5


def test_with_no_interval_every_use_sees_an_edit_of_the_same_size_and_mtime(
        tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")
    file = open_config(config(path), "file", "X", None, checks=ConfigFileSettings(check_s=0))
    first = file.current()
    assert first is not None and first.data == {"a": 1}
    st = path.stat()
    # an atomic replace within one clock tick: same size and mtime, a new inode
    fresh = tmp_path / "c.yaml.new"
    fresh.write_text("a: 2\n")
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(fresh, path)
    now = file.current()
    assert now is not None and now.data == {"a": 2}
    # an edit in place: same inode and size, a later mtime
    path.write_text("a: 3\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    now = file.current()
    assert now is not None and now.data == {"a": 3}


def test_within_the_interval_the_file_is_not_looked_at(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")
    file = open_config(config(path, 3600.0), "file", "X", None,
                       checks=ConfigFileSettings(check_s=None))
    path.write_text("a: 22\n")
    now = file.current()
    assert now is not None and now.data == {"a": 1}  # production: one look per interval
