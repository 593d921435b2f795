"""Guardrail files: what loads, what is refused (with where and why), who a limit binds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from nalar_common.auth import Principal
from nalar_common.configfile import ConfigError
from nalar_common.errors import Cancelled, GuardrailExceeded
from nalar_common.guardrails import (
    Breach,
    counter_key,
    open_guardrails,
    parse_guardrails,
    strongest,
    window_seconds,
)
from nalar_common.settings import GuardrailSettings
from nalar_common.subjects import Names

EXAMPLE = """
prices:
  simulated: {prompt: 0.5, completion: 1.5}
  default: {prompt: 2, completion: 6}
limits:
  - {name: run-tokens, scope: run, tokens: 2000, action: abort}
  - {name: critic, scope: run, iterations: 5, agent: Critic.review}
  - name: acme-daily
    scope: tenant
    cost: 25
    window: 24h
    match: {tenant: acme}
    action: pause
  - {name: slow, scope: session, wall_s: 600, action: reject}
"""


def test_a_full_file_loads() -> None:
    g = parse_guardrails(EXAMPLE)
    assert [lim.name for lim in g.limits] == ["run-tokens", "critic", "acme-daily", "slow"]
    critic = g.limits[1]
    assert critic.action == "reject" and critic.counter == "iterations:Critic.review"
    assert critic.counts("Critic", "review") and not critic.counts("Critic", "other")
    assert g.limits[2].window_s == 86400 and g.limits[2].counter == "cost"
    assert g.price("simulated").cost(1_000_000, 0) == 0.5
    assert g.price("gpt-x").cost(0, 1_000_000) == 6  # the default price
    acme, other = Principal("a", tenant="acme"), Principal("b", tenant="zeta")
    assert [lim.name for lim in g.applying(acme, "w")] == [
        "run-tokens", "critic", "acme-daily", "slow"]
    assert "acme-daily" not in [lim.name for lim in g.applying(other, "w")]
    assert parse_guardrails("limits: []").limits == ()


def test_iterations_without_an_agent_count_every_agent_call() -> None:
    lim = parse_guardrails("limits: [{iterations: 3}]").limits[0]
    assert lim.scope == "run" and lim.name == "limit-1" and lim.counts("Any", "thing")


@pytest.mark.parametrize(("text", "message"), [
    ("limits: [{scope: run, action: reject}]", "exactly one measure"),
    ("limits: [{tokens: 1, llm_calls: 2}]", "exactly one measure"),
    ("limits: [{tokens: -1}]", "a number >= 0"),
    ("limits: [{tokens: yes}]", "a number >= 0"),
    ("limits: [{tokens: 5, scope: node}]", "scope is one of"),
    ("limits: [{tokens: 5, action: warn}]", "action is one of"),
    ("limits: [{wall_s: 5, scope: tenant}]", "per run or per session"),
    ("limits: [{tokens: 5, agent: X}]", "`agent` goes with `iterations`"),
    ("limits: [{iterations: 5, agent: 'a b'}]", "Agent.method"),
    ("limits: [{tokens: 5, window: 1h}]", "`window` goes with session or tenant"),
    ("limits: [{tokens: 5, scope: tenant, window: soon}]", "window is a duration"),
    ("limits: [{tokens: 5, tokns: 3}]", "unknown keys ['tokns']"),
    ("limits: [{name: a, tokens: 1}, {name: a, tokens: 2}]", "used twice"),
    ("limits: [{cost: 5}]", "cost limits need `prices` with a `default`"),
    ("prices: {m: {prompt: 1}}\nlimits: [{cost: 5}]", "with a `default`"),
    ("limits: [{tokens: 5, match: [x]}]", "`match` is a mapping"),
    ("prices: {m: {prompt: 1, output: 2}}\nlimits: []", "prices.m"),
    ("limit: []", "the keys `limits` (a list; `[]` for none) and `prices`"),
    ("limits: [", "not valid YAML"),
    ("", "empty"),
    ("# nothing", "no settings"),
    ("prices: {default: {prompt: 1}}", "the keys `limits`"),  # cut off before its limits
    ("limits:\n", "`limits` is a list"),  # cut off just after `limits:`
])
def test_bad_files_are_refused_with_where_and_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_guardrails(text)
    assert message in str(err.value)


def test_windows_and_actions() -> None:
    assert [window_seconds(v, "w") for v in (90, "30s", "15m", "2h", "7d")] == [
        90, 30, 900, 7200, 604800]
    g = parse_guardrails("limits: [{name: p, tokens: 1, action: pause}, "
                         "{name: r, tokens: 1}, {name: a, tokens: 1, action: abort}]")
    pause, reject, abort = (Breach(lim, 2.0) for lim in g.limits)
    assert strongest([pause, reject]) is reject and strongest([pause, abort, reject]) is abort
    assert isinstance(reject.error(), GuardrailExceeded)
    assert isinstance(abort.error(), Cancelled)  # an abort cancels the run
    assert reject.error().details == {"guardrail": "r", "scope": "run", "measure": "tokens",
                                      "max": 1.0, "value": 2.0, "action": "reject"}


def test_an_explicit_empty_list_sets_no_limits_and_off_needs_the_setting(
        tmp_path: Path) -> None:
    assert parse_guardrails("limits: []").limits == ()
    assert open_guardrails(GuardrailSettings(NALAR_GUARDRAILS="none")).current().limits == ()
    path = tmp_path / "guardrails.yaml"
    with pytest.raises(ConfigError, match="cannot be read"):
        open_guardrails(GuardrailSettings(file=str(path)))
    path.write_text("limits:\n  - {tokens: 5}\n  - {tokens: 5, tokns: 3}\n")
    with pytest.raises(ConfigError) as err:
        open_guardrails(GuardrailSettings(file=str(path)))
    assert err.value.line == 3 and "limit 2" in str(err.value) and str(path) in str(err.value)


def test_a_bad_edit_or_a_deleted_file_keeps_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "guardrails.yaml"
    path.write_text("limits: [{name: t, tokens: 5}]\n")
    gf = open_guardrails(GuardrailSettings(file=str(path)))
    gf.check_every_s = 0.0
    for ahead, bad in enumerate(("", "limits: [{tokens: -1}]", "prices: {}")):
        path.write_text(bad)
        os.utime(path, (time.time() + ahead + 1, time.time() + ahead + 1))
        assert [lim.name for lim in gf.current().limits] == ["t"] and gf.error
    path.unlink()
    assert [lim.name for lim in gf.current().limits] == ["t"] and gf.error == "removed"


def test_counter_keys_of_different_tenants_never_collide() -> None:
    names = Names("p")
    # tenant `a:1` without a window once read tenant `a`'s count of window 1
    assert counter_key(names, "tenant", "a:1") != counter_key(names, "tenant", "a", 1)
    assert counter_key(names, "tenant", "a/b") != counter_key(names, "tenant", "a")
    assert counter_key(names, "run", "r1") == "p:nalar:guard:run:r1"  # plain ids read plainly
