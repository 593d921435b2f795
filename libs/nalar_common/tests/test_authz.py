"""Authorization rules: parsing (clear errors), matching, most-specific-first, grants of
workflows, agents and single methods, Ventis files, reloading."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from nalar_common.auth import Principal
from nalar_common.authz import PolicyFile, open_policy, parse_policy
from nalar_common.configfile import ConfigError
from nalar_common.settings import AuthSettings

POLICY = """
rules:
  - match: {role: admin}
    access: all
  - match: {tenant: acme, role: analyst}
    name: acme analysts
    workflows: [financial_analysis]
    agents: [StockAgent, BondAgent.analyze]
  - match: {role: [analyst, intern]}
    workflows: all
    agents: []
  - match: {}
    access: [hello, Greeter]
"""

ADMIN = Principal("root", ("admin",))
ACME = Principal("ann", ("analyst",), "acme")
OTHER = Principal("bob", ("analyst",), "globex")
GUEST = Principal("guest")


def test_first_matching_rule_decides_most_specific_first() -> None:
    p = parse_policy(POLICY)
    assert p.workflow(ADMIN, "anything").allowed
    assert p.workflow(ACME, "financial_analysis").allowed
    # ann matches the 2-key rule first: it grants no other workflow, though the 1-key rule
    # would
    denied = p.workflow(ACME, "hello")
    assert not denied.allowed and denied.rule == "acme analysts"
    assert p.call(ACME, "financial_analysis", "StockAgent", "quote").allowed
    assert p.call(ACME, "financial_analysis", "BondAgent", "analyze").allowed
    assert not p.call(ACME, "financial_analysis", "BondAgent", "trade").allowed
    assert p.workflow(OTHER, "hello").allowed and not p.call(OTHER, "w", "Greeter", "hi").allowed
    assert p.workflow(GUEST, "hello").allowed and p.call(GUEST, "hello", "Greeter", "hi").allowed
    assert not p.workflow(GUEST, "financial_analysis").allowed
    assert "guest" in p.workflow(GUEST, "x").why("workflow 'x'", GUEST)


def test_request_fields_and_claims_match_and_no_rule_means_deny() -> None:
    p = parse_policy("""
rules:
  - match: {workflow: research, department: [risk, audit]}
    agents: [Search]
  - match: {name: svc-batch}
    workflows: [nightly]
""")
    risk = Principal("eve", attrs={"department": "risk"})
    assert p.call(risk, "research", "Search", "query").allowed
    assert not p.call(risk, "other", "Search", "query").allowed  # no rule matches: deny
    assert p.workflow(Principal("svc-batch"), "nightly").allowed
    assert not p.workflow(Principal("svc-batch2"), "nightly").allowed


@pytest.mark.parametrize("text", ["", "   \n", "# nothing\n", "rules: []", "rules:",
                                  "rules: [{match: {}, access: all}]\nruns:",
                                  "rules:\n  - match: {role: adm"])  # the last: cut off
def test_an_empty_or_truncated_file_is_refused_never_allow_all(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_policy(text)


def test_only_the_explicit_setting_turns_authorization_off(tmp_path: Path) -> None:
    off = open_policy(AuthSettings(policy="none"))
    assert off.current().workflow(GUEST, "any").allowed
    assert off.current().call(GUEST, "any", "Tool", "run").allowed
    with pytest.raises(ConfigError, match="`file` or `none`"):
        open_policy(AuthSettings(policy="off"))
    # nothing loaded yet (a PolicyFile used before `require`): everything is denied
    assert not PolicyFile(tmp_path / "absent.yaml").value.workflow(GUEST, "any").allowed


@pytest.mark.parametrize(("text", "line", "why"), [
    (None, None, "cannot be read"),
    ("", 1, "empty"),
    ("# only a comment\n", 1, "no settings"),
    ("rules:\n  - match: {}\n    access: all\n  - match: {}\n    acces: [x]\n", 4,
     "rule 2: unknown keys ['acces']"),
    ("rules:\n  - match: {}\n    access: [x\n", 4, "not valid YAML"),
])
def test_a_bad_file_stops_the_service_at_start_naming_file_and_line(
        tmp_path: Path, text: str | None, line: int | None, why: str) -> None:
    path = tmp_path / "policy.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as err:
        open_policy(AuthSettings(policy_file=str(path)))
    assert err.value.path == path and err.value.line == line and why in str(err.value)
    assert str(path) in str(err.value) and (line is None or f"line {line}" in str(err.value))


def test_ventis_files_load_unchanged() -> None:
    p = parse_policy("""
rules:
  - match:
      origin: ceo
    access: all
  - match:
      origin: analyst
    access:
      - FinanceAgent
  - match: {}
    access:
      - FinanceAgent
      - MarketResearchAgent
      - Workflow
""")
    ceo, analyst = Principal("c", attrs={"origin": "ceo"}), Principal("a", attrs={"origin":
                                                                                 "analyst"})
    assert p.call(ceo, "Workflow", "Anything", "m").allowed
    assert p.call(analyst, "Workflow", "FinanceAgent", "m").allowed
    assert not p.call(analyst, "Workflow", "MarketResearchAgent", "m").allowed
    assert p.call(GUEST, "Workflow", "MarketResearchAgent", "m").allowed
    assert p.workflow(GUEST, "Workflow").allowed


@pytest.mark.parametrize("text, message", [
    ("rules: {a: 1}", "`rules` is a non-empty list"),
    ("rules: [1]", "rule 1: a mapping"),
    ("rules:\n  - match: {}\n    acess: all", "unknown keys ['acess']"),
    ("rules:\n  - match: {role: {x: 1}}\n    access: all", "match.role"),
    ("rules:\n  - match: {}\n    access: 3", "rule 1: access"),
    ("rules:\n  - match: []\n    access: all", "`match` is a mapping"),
    ("other: 1", "the keys `rules` and (optional) `runs`"),
    ("rules: [{match: {}, access: all}]\nruns: {delete: [admin]}", "`runs` maps"),
    ("rules: [", "not valid YAML"),
])
def test_bad_files_are_refused_with_where_and_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_policy(text)
    assert message in str(err.value)


def test_the_file_reloads_when_it_changes_and_a_bad_or_deleted_file_keeps_the_rules(
        tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - match: {}\n    access: [x]\n")
    pf = open_policy(AuthSettings(policy_file=str(path)))
    pf.check_every_s = 0.0
    assert pf.current().workflow(GUEST, "x").allowed
    assert not pf.current().workflow(GUEST, "y").allowed
    first = pf.current().revision

    def edit(text: str, ahead: float) -> None:
        path.write_text(text)
        os.utime(path, (time.time() + ahead, time.time() + ahead))

    edit("rules:\n  - match: {}\n    acces: [y]\n", 5)
    assert pf.current().revision == first and "acces" in (pf.error or "")
    assert "line 2" in (pf.error or "")
    for bad in ("", "rules: []", "rules:\n  - match: {"):  # emptied, no rules, cut off
        edit(bad, 6 + len(bad))
        assert pf.current().revision == first and pf.error
        assert not pf.current().workflow(GUEST, "y").allowed
    edit("rules:\n  - match: {}\n    access: [y]\n", 10)
    assert pf.current().workflow(GUEST, "y").allowed and pf.error is None
    path.unlink()  # a deleted file keeps the rules in force
    assert pf.current().workflow(GUEST, "y").allowed and pf.error == "removed"
    assert not pf.current().workflow(GUEST, "z").allowed


def test_run_actions_by_role() -> None:
    p = parse_policy("rules: [{match: {}, access: all}]\n"
                     "runs: {cancel: [operator], replay: all}\n")
    assert not p.run_action(ACME, "cancel").allowed
    assert p.run_action(Principal("op", ("operator",)), "cancel").allowed
    assert p.run_action(ACME, "replay").allowed  # `all`
    assert p.run_action(ACME, "signal").allowed  # left out: anyone who can see the run
    assert not PolicyFile(Path("/nonexistent")).value.run_action(ACME, "signal").allowed
