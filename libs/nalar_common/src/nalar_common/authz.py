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
if it grants the workflow (or agent, or method), denied otherwise; none matches: denied. A
file needs at least one rule. Ventis files (`match` / `access` only) load unchanged and mean
the same, except that here `access` covers workflows too.

`PolicyFile` fails closed: a missing, empty or invalid file stops a service at start; at
run time a bad edit or a deleted file keeps the rules in force (and says why: `error`).
Only `NALAR_AUTH_POLICY=none` turns authorization off (`open_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nalar_common.auth import Principal
from nalar_common.configfile import (
    OFF,
    ConfigError,
    ConfigFile,
    check_entry,
    load_yaml,
    open_config,
)
from nalar_common.settings import AuthSettings

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


RUN_ACTIONS = ("cancel", "signal", "replay")


@dataclass(frozen=True)
class AccessPolicy:
    """Rules in force. Without rules it allows everything only when `open` (authorization
    turned off explicitly); otherwise (nothing loaded yet) it denies everything.
    `actions[action]`: the roles that may cancel, signal or replay a run they can see
    (an action left out: anyone who can see the run)."""

    rules: tuple[Rule, ...] = ()
    revision: str = "unloaded"
    open: bool = False
    actions: dict[str, frozenset[str]] = field(default_factory=dict)

    def run_action(self, principal: Principal, action: str) -> Decision:
        """May `principal` `action` (cancel, signal, replay) a run it can see?"""
        roles = self.actions.get(action)
        if roles is None:
            return Decision(self.open or bool(self.rules), "", self.revision)
        return Decision(bool(roles & set(principal.roles)), f"runs.{action}", self.revision)

    def _decide(self, principal: Principal, request: dict[str, str],
                granted: Any) -> Decision:
        if not self.rules:
            return Decision(self.open, "", self.revision)
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


def _names(value: Any, where: str, line: int | None) -> frozenset[str] | None:
    if value == ALL:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: `all` or a list of names", line=line)
    return frozenset(value)


def parse_policy(text: str) -> AccessPolicy:
    """Rules from the YAML text; ConfigError naming the rule, field and line that is
    wrong. A file without rules is refused: it would allow nothing, or, read the old way,
    everything."""
    doc = load_yaml(text)
    data = doc.data
    if not isinstance(data, dict) or "rules" not in data or set(data) - {"rules", "runs"}:
        raise ConfigError("the file is a mapping with the keys `rules` and (optional) `runs`",
                          line=1)
    if "runs" in data and not isinstance(data["runs"], dict):  # `runs:` cut short
        raise ConfigError("`runs` maps actions to roles", line=doc.line_of("runs"))
    actions = _run_actions(data.get("runs"), doc.line_of("runs"))
    raw = data["rules"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError("`rules` is a non-empty list (to allow everyone everything, "
                          "write `- {match: {}, access: all}`)", line=doc.line_of("rules"))
    rules = []
    for i, item in enumerate(raw):
        where, line = f"rule {i + 1}", doc.line_of("rules", i)
        item = check_entry(item, _RULE_KEYS, where, "`match` and `access`", line)
        try:
            cond = parse_match(item.get("match"), where)
        except ValueError as exc:
            raise ConfigError(str(exc), line=line) from None
        access = _names(item["access"], f"{where}: access", line) if "access" in item \
            else frozenset()
        workflows = _names(item["workflows"], f"{where}: workflows", line) \
            if "workflows" in item else access
        agents = _names(item["agents"], f"{where}: agents", line) \
            if "agents" in item else access
        rules.append(Rule(cond, workflows, agents, i, str(item.get("name") or "")))
    # most specific first; file order among equals (sorted() is stable)
    ordered = sorted(rules, key=lambda r: -len(r.match))
    return AccessPolicy(tuple(ordered), doc.revision, actions=actions)


def _run_actions(raw: Any, line: int | None) -> dict[str, frozenset[str]]:
    """`runs: {cancel: [roles], signal: [roles], replay: [roles]}` (each `all` or a list of
    roles; an action left out: anyone who may see the run)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) - set(RUN_ACTIONS):
        raise ConfigError(f"`runs` maps {list(RUN_ACTIONS)} to `all` or a list of roles",
                          line=line)
    out = {}
    for action, roles in raw.items():
        names = _names(roles, f"runs.{action}", line)
        if names is not None:
            out[str(action)] = names
    return out


class PolicyFile(ConfigFile[AccessPolicy]):
    """The rules in force from `path`, reread when the file changes; everything is denied
    until a first good load."""

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        super().__init__(path, parse_policy, AccessPolicy(), what="authz.policy",
                         check_every_s=check_every_s)

    @classmethod
    def off(cls) -> PolicyFile:
        """Authorization off: every principal may run everything (NALAR_AUTH_POLICY=none)."""
        pf = cls(Path("/dev/null"))
        pf.turn_off(OPEN)
        return pf


OPEN = AccessPolicy((), OFF, open=True)  # authorization off: everything allowed


def open_policy(settings: AuthSettings) -> PolicyFile:
    """The policy a service enforces, loaded now: ConfigError (file and line) when the file
    is missing, empty or invalid, unless `NALAR_AUTH_POLICY=none` turns it off."""
    pf = PolicyFile(Path(settings.policy_file))
    open_config(pf, settings.policy, "NALAR_AUTH_POLICY", OPEN)
    return pf
