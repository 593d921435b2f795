"""Authorization rules: parsing (clear errors), matching, most-specific-first, grants of
workflows, agents and single methods, Ventis files, reloading."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from nalar_common.auth import Principal
from nalar_common.authz import PolicyFile, parse_policy

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


def test_no_rules_allow_everything() -> None:
    for text in ("", "rules: []", "# nothing\n"):
        assert parse_policy(text).workflow(GUEST, "any").allowed


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
    ("rules: {a: 1}", "`rules` is a list"),
    ("rules: [1]", "rule 1: a mapping"),
    ("rules:\n  - match: {}\n    acess: all", "unknown keys ['acess']"),
    ("rules:\n  - match: {role: {x: 1}}\n    access: all", "match.role"),
    ("rules:\n  - match: {}\n    access: 3", "rule 1: access"),
    ("rules:\n  - match: []\n    access: all", "`match` is a mapping"),
    ("other: 1", "one key, `rules`"),
    ("rules: [", "not valid YAML"),
])
def test_bad_files_are_refused_with_where_and_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_policy(text)
    assert message in str(err.value)


def test_the_file_reloads_when_it_changes_and_a_bad_edit_keeps_the_rules(
        tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    pf = PolicyFile(path, check_every_s=0.0)
    assert pf.current().workflow(GUEST, "x").allowed  # no file: no rules
    path.write_text("rules:\n  - match: {}\n    access: [x]\n")
    assert pf.current().workflow(GUEST, "x").allowed
    assert not pf.current().workflow(GUEST, "y").allowed
    first = pf.current().revision
    path.write_text("rules:\n  - match: {}\n    acces: [y]\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert pf.current().revision == first and "acces" in (pf.error or "")
    path.write_text("rules:\n  - match: {}\n    access: [y]\n")
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert pf.current().workflow(GUEST, "y").allowed and pf.error is None
    path.unlink()
    assert pf.current().workflow(GUEST, "z").allowed
