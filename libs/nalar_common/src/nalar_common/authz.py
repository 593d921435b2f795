"""Authorization rules (`config/policy.yaml`): who may start which workflows and call which
agents and methods. The gateway checks a run's workflow; every local controller checks each
agent call again with the principal that started the run.

    rules:
      - match: {role: admin}                  # principal attributes, request fields
        access: all
      - match: {tenant: acme, role: analyst}
        workflows: [financial_analysis]        # or `all`
        agents: [StockAgent, BondAgent.analyze]  # an agent, or one method of it
      - match: {}                              # the default
        access: [hello]                        # names of any kind: workflows, agents, A.m

A rule's `match` compares each key with the principal (`name`, `tenant`, `via`, `role`: any
of its roles, any other claim of its token) or the request (`workflow`: the run's
workflow); a list value matches any of its items. Rules are tried most specific first (the
most `match` keys), in file order among equals, and the first that matches decides: allowed
if it grants the workflow (or agent, or method), denied otherwise. No rules: everything is
allowed; rules, but none matches: denied. Ventis files (`match` / `access` only) load
unchanged and mean the same, except that here `access` covers workflows too.

`PolicyFile` rereads the file when it changes (at most once a second); a file that does
not load keeps the rules in force and says why (`error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nalar_common.auth import Principal
from nalar_common.configfile import ConfigFile, check_entry, load_yaml

ALL = "all"
_RULE_KEYS = {"match", "access", "workflows", "agents", "name"}


@dataclass(frozen=True)
class Rule:
    match: dict[str, tuple[str, ...]]
    workflows: frozenset[str] | None  # None: all
    agents: frozenset[str] | None  # "Agent" or "Agent.method"; None: all
    index: int  # position in the file
    name: str = ""

    def matches(self, principal: Principal, request: dict[str, str]) -> bool:
        return matches(self.match, principal, request)

    def describe(self) -> str:
        return self.name or f"rule {self.index + 1}"


def matches(cond: dict[str, tuple[str, ...]], principal: Principal,
            request: dict[str, str]) -> bool:
    """Whether every key of a `match` holds for the principal or the request."""
    return all(_values(principal, request, key) & set(want) for key, want in cond.items())


def parse_match(match: Any, where: str) -> dict[str, tuple[str, ...]]:
    """A `match` mapping: each key to a value or a list of values (any of them matches)."""
    match = {} if match is None else match
    if not isinstance(match, dict):
        raise ValueError(f"{where}: `match` is a mapping")
    cond = {}
    for key, val in match.items():
        vals = val if isinstance(val, list) else [val]
        if not vals or any(isinstance(v, dict | list) or v is None for v in vals):
            raise ValueError(f"{where}: match.{key} is a value or a list of values")
        cond[str(key)] = tuple(str(v) for v in vals)
    return cond


def _values(p: Principal, request: dict[str, str], key: str) -> set[str]:
    if key in ("role", "roles"):
        return set(p.roles)
    if key in ("name", "tenant", "via"):
        return {str(getattr(p, key))}
    if key in request:
        return {request[key]}
    if key in p.attrs:
        return {str(p.attrs[key])}
    return set()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # which rule decided ("" when there are no rules)
    revision: str

    def why(self, what: str, principal: Principal) -> str:
        if self.rule:
            return f"{self.rule} of policy {self.revision} denies {what} to {principal.name!r}"
        return f"no rule of policy {self.revision} matches {principal.name!r} for {what}"


@dataclass(frozen=True)
class AccessPolicy:
    rules: tuple[Rule, ...] = ()
    revision: str = "none"

    def _decide(self, principal: Principal, request: dict[str, str],
                granted: Any) -> Decision:
        if not self.rules:
            return Decision(True, "", self.revision)
        for rule in self.rules:
            if rule.matches(principal, request):
                return Decision(bool(granted(rule)), rule.describe(), self.revision)
        return Decision(False, "", self.revision)

    def workflow(self, principal: Principal, workflow: str) -> Decision:
        return self._decide(principal, {"workflow": workflow},
                            lambda r: r.workflows is None or workflow in r.workflows)

    def call(self, principal: Principal, workflow: str, agent: str, method: str) -> Decision:
        return self._decide(principal, {"workflow": workflow},
                            lambda r: r.agents is None or agent in r.agents
                            or f"{agent}.{method}" in r.agents)


def _names(value: Any, where: str) -> frozenset[str] | None:
    if value == ALL:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: `all` or a list of names")
    return frozenset(value)


def parse_policy(text: str) -> AccessPolicy:
    """Rules from the YAML text; ValueError naming the rule and field that is wrong."""
    doc, revision = load_yaml(text)
    if doc is None:
        return AccessPolicy((), revision)
    if not isinstance(doc, dict) or set(doc) - {"rules"}:
        raise ValueError("the file is a mapping with one key, `rules`")
    raw = doc.get("rules") or []
    if not isinstance(raw, list):
        raise ValueError("`rules` is a list")
    rules = []
    for i, item in enumerate(raw):
        where = f"rule {i + 1}"
        item = check_entry(item, _RULE_KEYS, where, "`match` and `access`")
        cond = parse_match(item.get("match"), where)
        access = _names(item["access"], f"{where}: access") if "access" in item \
            else frozenset()
        workflows = _names(item["workflows"], f"{where}: workflows") \
            if "workflows" in item else access
        agents = _names(item["agents"], f"{where}: agents") if "agents" in item else access
        rules.append(Rule(cond, workflows, agents, i, str(item.get("name") or "")))
    # most specific first; file order among equals (sorted() is stable)
    ordered = sorted(rules, key=lambda r: -len(r.match))
    return AccessPolicy(tuple(ordered), revision)


class PolicyFile(ConfigFile[AccessPolicy]):
    """The rules in force from `path`, reread when the file changes."""

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        super().__init__(path, parse_policy, AccessPolicy(), what="authz.policy",
                         check_every_s=check_every_s)
