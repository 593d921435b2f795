"""Guardrails (`config/guardrails.yaml`): caps on what runs may spend, per run, per session
and per tenant, enforced by the local controllers before the spend (docs/guardrails.md).

    prices:                      # USD per million tokens, by model; `default` for the rest
      simulated: {prompt: 0.5, completion: 1.5}
    limits:
      - name: run-tokens
        scope: run               # run | session | tenant
        tokens: 20000            # one measure: tokens | cost | llm_calls | iterations | wall_s
        action: abort            # reject | pause | abort
      - name: critic-rounds
        scope: run
        iterations: 5
        agent: Critic.review     # iterations of one agent or method (absent: every agent call)
        action: reject
      - name: acme-daily-spend
        scope: tenant
        cost: 25.0
        window: 24h              # session and tenant counts start again every window
        match: {tenant: acme}    # whom it binds, as in policy.yaml (absent: everyone)
        action: pause

`tokens`, `cost` and `llm_calls` are checked before every LLM request an agent makes (its
worst case: prompt plus `max_tokens`), `iterations` before every agent call, `wall_s` at
both. The counts are kept in Redis (`guard:<scope>:<id>` hashes) and shared by every node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from nalar_common.auth import Principal
from nalar_common.authz import matches, parse_match
from nalar_common.configfile import (
    OFF,
    ConfigError,
    ConfigFile,
    check_entry,
    load_yaml,
    open_config,
)
from nalar_common.errors import Cancelled, GuardrailExceeded, NalarError
from nalar_common.settings import GuardrailSettings
from nalar_common.subjects import Names, key_part

MEASURES = ("tokens", "cost", "llm_calls", "iterations", "wall_s")
LLM_MEASURES = ("tokens", "cost", "llm_calls")  # checked before each LLM request
SCOPES = ("run", "session", "tenant", "execution")  # execution: each call on its own
SEVERITY = {"pause": 0, "reject": 1, "abort": 2}  # several breached at once: the strongest acts
_LIMIT_KEYS = {"name", "scope", "action", "agent", "window", "match", *MEASURES}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
RUN_TTL_S = 7 * 86400  # counts of a run outlive any run
RESUME = "resume"  # the signal that lets a paused run go on


@dataclass(frozen=True)
class Price:
    prompt: float  # USD per million prompt tokens
    completion: float  # USD per million completion tokens

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (self.prompt * prompt_tokens + self.completion * completion_tokens) / 1e6


@dataclass(frozen=True)
class Limit:
    name: str
    scope: str
    measure: str
    max: float
    action: str
    agent: str = ""  # iterations: "Agent" or "Agent.method"; "": every agent call
    window_s: float = 0.0
    match: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def counter(self) -> str:
        """The field of the scope's hash this limit reads."""
        return f"iterations:{self.agent or '*'}" if self.measure == "iterations" \
            else self.measure

    def counts(self, agent: str, method: str) -> bool:
        """Whether a call of `agent.method` is one of this limit's iterations."""
        return self.measure == "iterations" and (
            not self.agent or self.agent in (agent, f"{agent}.{method}"))

    def describe(self) -> str:
        what = f"{self.measure} of {self.agent}" if self.agent else self.measure
        return f"guardrail {self.name!r} ({what} per {self.scope} at most {self.max:g})"


@dataclass(frozen=True)
class Guardrails:
    limits: tuple[Limit, ...] = ()
    prices: dict[str, Price] = field(default_factory=dict)
    revision: str = "none"

    def price(self, model: str) -> Price:
        return self.prices.get(model) or self.prices.get("default") or Price(0.0, 0.0)

    def applying(self, principal: Principal, workflow: str) -> tuple[Limit, ...]:
        """The limits that bind a run started by `principal` for `workflow`."""
        return tuple(lim for lim in self.limits
                     if matches(lim.match, principal, {"workflow": workflow}))


@dataclass(frozen=True)
class Breach:
    """A limit that the spend being checked would cross: `value` is what was counted before
    it, `add` what it would add."""

    limit: Limit
    value: float
    add: float = 0.0

    def details(self) -> dict[str, Any]:
        lim = self.limit
        out = {"guardrail": lim.name, "scope": lim.scope, "measure": lim.measure,
               "max": lim.max, "value": round(self.value, 6), "action": lim.action}
        if lim.agent:
            out["agent"] = lim.agent
        return out

    def error(self) -> NalarError:
        """What the call (or the run, for `abort`) ends with."""
        lim = self.limit
        spent = f"{self.value:g} counted" + (f", {self.add:g} more asked" if self.add else "")
        if lim.action == "abort":
            return Cancelled(f"run aborted by {lim.describe()}: {spent}",
                             details=self.details())
        return GuardrailExceeded(f"{lim.describe()} stops it: {spent}", details=self.details())


def strongest(breaches: list[Breach]) -> Breach | None:
    return max(breaches, key=lambda b: SEVERITY[b.limit.action], default=None)


def window_seconds(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: window is a duration such as 3600, 30m, 24h or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _WINDOW.match(str(value))
        if m is None:
            raise ValueError(f"{where}: window is a duration such as 3600, 30m, 24h or 7d")
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{where}: window must be positive")
    return seconds


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: a number >= 0")
    return float(value)


def _prices(raw: Any) -> dict[str, Price]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("`prices` maps model names to {prompt: USD, completion: USD} per "
                         "million tokens")
    out = {}
    for model, p in raw.items():
        where = f"prices.{model}"
        if not isinstance(p, dict) or set(p) - {"prompt", "completion"} or not p:
            raise ValueError(f"{where}: {{prompt: USD, completion: USD}} per million tokens")
        out[str(model)] = Price(_number(p.get("prompt", 0), f"{where}.prompt"),
                                _number(p.get("completion", 0), f"{where}.completion"))
    return out


def _limit(item: Any, i: int, names: set[str]) -> Limit:
    where = f"limit {i + 1}"
    item = check_entry(item, _LIMIT_KEYS, where, "`scope`, a measure and `action`")
    name = str(item.get("name") or f"limit-{i + 1}")
    where = f"limit {i + 1} ({name})"
    if name in names:
        raise ValueError(f"{where}: the name is used twice")
    names.add(name)
    measures = [m for m in MEASURES if m in item]
    if len(measures) != 1:
        raise ValueError(f"{where}: exactly one measure of {list(MEASURES)}")
    measure = measures[0]
    scope = item.get("scope", "run")
    if scope not in SCOPES:
        raise ValueError(f"{where}: scope is one of {list(SCOPES)}")
    action = item.get("action", "reject")
    if action not in SEVERITY:
        raise ValueError(f"{where}: action is one of {list(SEVERITY)}")
    if measure == "wall_s" and scope == "tenant":
        raise ValueError(f"{where}: wall_s is counted per run or per session")
    if scope == "execution" and measure not in ("tokens", "cost", "llm_calls"):
        raise ValueError(f"{where}: per execution (one call), limits are on tokens, cost or "
                         "llm_calls (a call's time is its method's timeout)")
    agent = item.get("agent") or ""
    if agent and measure != "iterations":
        raise ValueError(f"{where}: `agent` goes with `iterations`")
    if not isinstance(agent, str) or (agent and not re.fullmatch(r"[\w]+(\.[\w]+)?", agent)):
        raise ValueError(f"{where}: agent is `Agent` or `Agent.method`")
    window = 0.0
    if item.get("window") is not None:
        if scope in ("run", "execution") or measure == "wall_s":
            raise ValueError(f"{where}: `window` goes with session or tenant counts")
        window = window_seconds(item["window"], where)
    return Limit(name=name, scope=scope, measure=measure,
                 max=_number(item[measure], f"{where}: {measure}"), action=action,
                 agent=agent, window_s=window, match=parse_match(item.get("match"), where))


def parse_guardrails(text: str) -> Guardrails:
    """Limits and prices from the YAML text; ConfigError naming the limit, field and line.
    The file must say `limits:` (an explicit `limits: []` sets none): an empty or cut-off
    file never means "no limits"."""
    doc = load_yaml(text)
    data = doc.data
    if not isinstance(data, dict) or set(data) - {"limits", "prices"} or "limits" not in data:
        raise ConfigError("the file is a mapping with the keys `limits` (a list; `[]` for "
                          "none) and `prices`", line=1)
    raw = data["limits"]
    if not isinstance(raw, list):  # `limits:` with nothing after it: a file cut short
        raise ConfigError("`limits` is a list (`limits: []` for none)",
                          line=doc.line_of("limits"))
    names: set[str] = set()
    limits = []
    for i, item in enumerate(raw):
        try:
            limits.append(_limit(item, i, names))
        except ValueError as exc:
            raise ConfigError(str(exc), line=doc.line_of("limits", i)) from None
    try:
        prices = _prices(data.get("prices"))
    except ValueError as exc:
        raise ConfigError(str(exc), line=doc.line_of("prices")) from None
    if any(lim.measure == "cost" for lim in limits) and "default" not in prices:
        raise ConfigError("cost limits need `prices` with a `default` (USD per million "
                          "tokens): a model without a price would cost nothing",
                          line=doc.line_of("prices") or doc.line_of("limits"))
    return Guardrails(tuple(limits), prices, doc.revision)


class GuardrailFile(ConfigFile[Guardrails]):
    """The guardrails in force from `path`, reread when the file changes (services load it
    with `open_guardrails`, which refuses a missing or bad file)."""

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        super().__init__(path, parse_guardrails, Guardrails(revision="unloaded"),
                         what="guardrails", check_every_s=check_every_s)

    @classmethod
    def off(cls) -> GuardrailFile:
        """No limits, by explicit choice (NALAR_GUARDRAILS=none)."""
        gf = cls(Path("/dev/null"))
        gf.turn_off(Guardrails(revision=OFF))
        return gf


def open_guardrails(settings: GuardrailSettings) -> GuardrailFile:
    """The guardrails a service enforces, loaded now: ConfigError (file and line) when the
    file is missing, empty or invalid, unless `NALAR_GUARDRAILS=none` turns them off."""
    gf = GuardrailFile(Path(settings.file))
    open_config(gf, settings.mode, "NALAR_GUARDRAILS", Guardrails(revision=OFF))
    return gf


# -- where the counts live ------------------------------------------------------------------
def counter_key(names: Names, scope: str, ident: str, bucket: int | None = None) -> str:
    # the id escaped: a tenant `a:1` never reads tenant `a`'s count of window 1
    parts = ["guard", scope, key_part(ident)] + ([str(bucket)] if bucket is not None else [])
    return names.redis(*parts)


def waived_key(names: Names, run: str) -> str:
    """The limits a run's `resume` signal lifted for it (a set of limit names)."""
    return names.redis("guard", "waived", key_part(run))


async def waive(r: aioredis.Redis, names: Names, run: str, limits: list[str]) -> None:
    """Lift `limits` for the rest of `run` (what resuming a paused run does)."""
    if limits:
        key = waived_key(names, run)
        async with r.pipeline(transaction=True) as p:
            p.sadd(key, *limits)
            p.expire(key, RUN_TTL_S)
            await p.execute()
