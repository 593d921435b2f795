"""Policy specs name only allowed classes: refused ones are never imported, and params are
checked against what the class declares before it is constructed."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nalar_common.policyspec import (
    BUILTIN_POLICIES,
    ENTRY_POINT_GROUP,
    PolicyAllowList,
    PolicyNotAllowed,
    PolicySpecError,
    load_policy,
    split_spec,
)
from nalar_common.settings import PolicyClassSettings

POLICY_MODULE = '''
from pathlib import Path

from pydantic import BaseModel, ConfigDict

Path({imported!r}).write_text("imported")


class Sneaky:
    def __init__(self, level: int = 1, names: list[str] | None = None, *,
                 ratio: float = 0.5) -> None:
        Path({constructed!r}).write_text(str(level))
        self.level, self.names, self.ratio = level, names, ratio

    def decide(self, state: object, out: object) -> None:
        pass


class Declared:
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        window_s: float = 1.0

    def __init__(self, window_s: float = 1.0, **_: object) -> None:
        self.window_s = window_s

    def decide(self, state: object, out: object) -> None:
        pass


class Loose:
    def __init__(self, level: int = 1, **extra: object) -> None:
        self.level, self.extra = level, extra

    def decide(self, state: object, out: object) -> None:
        pass


class Picky:
    def __init__(self, level: int = 1) -> None:
        if level > 3:
            raise ValueError("level must be <= 3")
        self.level = level

    def decide(self, state: object, out: object) -> None:
        pass


class NoDecide:
    def __init__(self) -> None:
        Path({constructed!r}).write_text("constructed")
'''


class Marked:
    """A fresh policy module in a temp dir on sys.path; importing it writes `imported`,
    constructing its `Sneaky` writes `constructed`."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = f"marked_policy_{uuid.uuid4().hex[:8]}"
        self.imported, self.constructed = tmp / "imported", tmp / "constructed"
        (tmp / f"{self.name}.py").write_text(POLICY_MODULE.format(
            imported=str(self.imported), constructed=str(self.constructed)))
        monkeypatch.syspath_prepend(str(tmp))

    def __call__(self, cls: str = "Sneaky") -> str:
        return f"{self.name}:{cls}"

    def untouched(self) -> bool:
        return (self.name not in sys.modules and not self.imported.exists()
                and not self.constructed.exists())


@pytest.fixture
def marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Marked]:
    mod = Marked(tmp_path, monkeypatch)
    yield mod
    sys.modules.pop(mod.name, None)


def _allow(*names: str) -> PolicyAllowList:
    return PolicyAllowList.load(PolicyClassSettings(allow=",".join(names)))


def test_code_execution_specs_are_refused_before_anything_runs(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    for spec in [{"class": "subprocess:run", "params": {"args": ["touch", str(pwned)]}},
                 {"class": "os:system", "params": {"command": f"touch {pwned}"}},
                 {"class": "builtins:eval", "params": {"source": "1"}},
                 "builtins:exec", "importlib:import_module"]:
        with pytest.raises(PolicyNotAllowed, match="not allowed") as info:
            load_policy(spec, _allow())
        assert isinstance(info.value, ValueError)
    assert not pwned.exists()


def test_a_class_not_allowed_is_never_imported(marked: Marked) -> None:
    spec = {"class": marked(), "params": {"level": 2}}
    for allowed in (None, PolicyAllowList.builtin(), _allow("other_module:Sneaky")):
        with pytest.raises(PolicyNotAllowed) as info:
            load_policy(spec, allowed)
        assert info.value.name == marked()
    assert marked.untouched()


def test_a_function_is_not_a_policy_even_when_allowed(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    with pytest.raises(PolicySpecError, match="not a class with a decide"):
        load_policy({"class": "subprocess:run", "params": {"args": ["touch", str(pwned)]}},
                    _allow("subprocess:run"))
    assert not pwned.exists()


def test_allowed_by_config(marked: Marked, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NALAR_POLICIES_ALLOW", f" {marked()} , {marked('Picky')}")
    allowed = PolicyAllowList.load(PolicyClassSettings())
    policy = load_policy({"class": marked(), "params": {"level": 2}}, allowed)
    assert policy.level == 2 and marked.constructed.read_text() == "2"
    assert load_policy(marked("Picky"), allowed).level == 1
    with pytest.raises(PolicyNotAllowed):
        load_policy(marked("Loose"), allowed)  # allowed per class, not per module


def test_allowed_by_an_entry_point(marked: Marked, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    info = site / "my_policies-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-policies\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nsneaky = {marked()}\n"
                                           f"[other.group]\nloose = {marked('Loose')}\n")
    with pytest.raises(PolicyNotAllowed):
        load_policy(marked(), PolicyAllowList.load(PolicyClassSettings()))
    monkeypatch.syspath_prepend(str(site))
    allowed = PolicyAllowList.load(PolicyClassSettings())
    assert marked() in allowed.names and marked("Loose") not in allowed.names
    assert load_policy(marked(), allowed).level == 1


def test_params_are_checked_before_construction(marked: Marked) -> None:
    allowed = _allow(marked(), marked("Declared"), marked("Loose"), marked("Picky"),
                     marked("NoDecide"))
    for params, why in [({"levle": 2}, "unknown param 'levle' (takes: level, names, ratio)"),
                        ({"level": "high"}, "param 'level': Input should be a valid integer"),
                        ({"names": "abc"}, "param 'names'"),
                        ({"ratio": [1]}, "param 'ratio'")]:
        with pytest.raises(PolicySpecError, match=re.escape(why)):
            load_policy({"class": marked(), "params": params}, allowed)
    assert not marked.constructed.exists()
    with pytest.raises(PolicySpecError, match="not a class with a decide"):
        load_policy(marked("NoDecide"), allowed)
    assert not marked.constructed.exists()
    policy = load_policy({"class": marked(), "params": {"level": "3", "ratio": 1}}, allowed)
    assert (policy.level, policy.names, policy.ratio) == (3, None, 1.0)


def test_a_declared_params_model_is_used(marked: Marked) -> None:
    allowed = _allow(marked("Declared"))
    assert load_policy({"class": marked("Declared"), "params": {"window_s": 2}},
                       allowed).window_s == 2.0
    with pytest.raises(PolicySpecError, match=r"unknown param 'other'.*takes: window_s"):
        load_policy({"class": marked("Declared"), "params": {"other": 1}}, allowed)


def test_kwargs_take_extra_params_and_constructor_errors_are_spec_errors(
        marked: Marked) -> None:
    allowed = _allow(marked("Loose"), marked("Picky"))
    loose = load_policy({"class": marked("Loose"), "params": {"level": 2, "x": 1}}, allowed)
    assert (loose.level, loose.extra) == (2, {"x": 1})
    with pytest.raises(PolicySpecError, match="refused its params: level must be <= 3"):
        load_policy({"class": marked("Picky"), "params": {"level": 4}}, allowed)


def test_an_allowed_name_that_does_not_import_is_a_spec_error() -> None:
    with pytest.raises(PolicySpecError, match="cannot be imported"):
        load_policy("no_such_module_here:Policy", _allow("no_such_module_here:Policy"))


def test_builtins_load_by_default() -> None:
    policy = load_policy({"class": "nalar_global_controller.policies:Rebalancer",
                          "params": {"high": 2.0}})
    assert type(policy).__name__ == "Rebalancer" and policy.high == 2.0
    assert "nalar_global_controller.rebalance:Rebalancer" in BUILTIN_POLICIES


def test_spec_shapes() -> None:
    assert split_spec(" a.b:C ") == ("a.b:C", {})
    assert split_spec({"class": "a:C", "params": {"x": 1}}) == ("a:C", {"x": 1})
    for bad in ["no_colon_here", "a:b.c", "a:", ":C", "a b:C", 3, {"class": 1},
                {"class": "a:C", "params": [1]}, {"class": "a:C", "other": 1}]:
        with pytest.raises(PolicySpecError):
            split_spec(bad)


def test_a_malformed_allow_entry_is_refused() -> None:
    with pytest.raises(PolicySpecError, match="NALAR_POLICIES_ALLOW entry 'nocolon'"):
        PolicyAllowList.load(PolicyClassSettings(allow="a:B,nocolon"))
