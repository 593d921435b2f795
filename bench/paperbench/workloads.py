"""The paper's three workloads at this machine's scale: the engines (hosts) each system
gets, the arrival schedules, and the rates swept. Parameters next to the paper's are in
bench/PAPER.md."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from paperbench.loadgen import Arrival, poisson

TICKERS = ("NVDA", "AAPL", "MSFT", "AMZN", "GOOG", "TSLA", "JPM", "XOM", "KO", "PFE")
QUESTIONS = ("Should I buy?", "Is it overvalued?", "What are the main risks?",
             "How does it compare to its sector?", "Is the dividend safe?")
FA_AGENTS = "FAAnalyst,FAStock,FABond,FAResearch,FANews,FASummarizer"
REBALANCE = "nalar_global_controller.policies:Rebalancer"
# also even out pools that run near saturation (where engines run out of KV cache) before
# anything queues
EVEN_OUT = {"balance": 0.2, "cooldown_s": 1.0}
DEFAULT_POLICIES = ("LeastLoadedRouting", "SessionAffinity", "HeadOfLineMigration",
                    "SessionPriority")


@dataclass(frozen=True)
class Host:
    """One agent host: one engine, i.e. one GPU."""

    host_id: str
    agents: str  # what it starts with
    slots: int = 0  # instances it may run at once (0: no limit)
    engine: bool = True  # its agents use its engine (the router's classifier does not)


@dataclass
class Workload:
    name: str
    title: str
    time_scale: float
    hosts: list[Host]
    ray_args: list[str]
    # Nalar runs the Rebalancer too, with these parameters (pools of one agent type per
    # engine); None: not
    rebalance: dict[str, float] | None
    rates: list[float]  # runs per second (router, fa) swept; a batch size for swe
    quick_rates: list[float]
    warmup_s: float = 10.0
    measure_s: float = 30.0
    # arrivals go on this long after the measured window, not counted, so the window's last
    # runs meet the same load as its first (not a system emptying out)
    cooldown_s: float = 10.0
    drain_s: float = 40.0  # from the measured window's end, for its runs to finish
    startup_s: float = 0.0  # a provisioned instance's engine start-up (wall seconds)
    # `make bench`: warm-up, measured window, cool-down and drain (seconds), and the systems
    # run (those the workload's targets compare)
    quick_windows: tuple[float, float, float, float] = (3.0, 12.0, 3.0, 15.0)
    quick_systems: tuple[str, ...] = ("nalar", "static", "ayo", "ray")
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def batch(self) -> bool:
        return self.name == "swe"

    @property
    def load_end(self) -> float:
        """When arrivals stop: after the warm-up, the measured window and the cool-down."""
        return self.warmup_s + self.measure_s + self.cooldown_s

    def windows(self) -> dict[str, float]:
        """The windows that shape this workload's figures (a batch has only its drain)."""
        if self.batch:
            return {"drain_s": self.drain_s}
        return {"warmup_s": self.warmup_s, "measure_s": self.measure_s,
                "cooldown_s": self.cooldown_s, "drain_s": self.drain_s}

    def policies(self) -> str:
        names = [f"nalar_global_controller.policies:{p}" for p in DEFAULT_POLICIES]
        if self.rebalance is None:
            return ",".join(names)
        return json.dumps([*names, {"class": REBALANCE, "params": self.rebalance}])

    def schedule(self, rate: float, seed: int) -> list[Arrival]:
        return {"fa": fa_schedule, "router": router_schedule,
                "swe": swe_schedule}[self.name](self, rate, seed)


def fa_schedule(w: Workload, rate: float, seed: int) -> list[Arrival]:
    """Sessions arrive as a Poisson process; each asks a geometric number of follow-ups
    (mean `followups`) after exponential think times; `rate` counts every run."""
    rng = random.Random(seed)
    followups, think_s = w.extra["followups"], w.extra["think_s"]
    session_rate = rate / (1.0 + followups)
    p_more = followups / (1.0 + followups)
    end = w.load_end
    out: list[Arrival] = []
    # sessions start well before the load does (long enough that hardly any session that
    # started earlier would still be going), so follow-ups are in steady state from t = 0
    start = -think_s * (1.0 + followups) * 5
    tag = f"{seed}-{rate:g}"
    for n, t in enumerate(poisson(rng, session_rate, start, end)):
        # each session draws from its own stream: a longer schedule (a cool-down) keeps
        # the shorter one's arrivals
        own = random.Random(f"{tag}-{n}")
        session, ticker = f"fa-{tag}-{n}", own.choice(TICKERS)
        at, turn, prev = t, 0, None
        while at < end:
            out.append(Arrival(at, "fa_query", {"ticker": ticker, "question":
                                                own.choice(QUESTIONS), "turn": turn},
                               session, prev))
            prev = len(out) - 1
            if own.random() >= p_more:
                break
            at += own.expovariate(1.0 / think_s)
            turn += 1
    return _sorted(out)


def _sorted(arrivals: list[Arrival]) -> list[Arrival]:
    """From t = 0 on, sorted by time, each follow-up's `after` renumbered to match (None
    where its predecessor was before the start)."""
    order = sorted((i for i, a in enumerate(arrivals) if a.t >= 0), key=lambda i: arrivals[i].t)
    new_index = {old: new for new, old in enumerate(order)}
    return [Arrival(a.t, a.workflow, a.input, a.session, new_index.get(a.after)
                    if a.after is not None else None)
            for a in (arrivals[old] for old in order)]


def router_schedule(w: Workload, rate: float, seed: int) -> list[Arrival]:
    """Independent queries, Poisson; the share of coding queries drifts from 10% to 90%
    over the first `drift` of the measuring window (10% during the warm-up), then stays
    there (through the cool-down too): the skew builds, then persists, as in the paper's
    traces."""
    rng = random.Random(seed)
    end = w.load_end
    drift_s = w.measure_s * w.extra.get("drift", 1.0)
    out: list[Arrival] = []
    for n, t in enumerate(poisson(rng, rate, 0.0, end)):
        drift = min(1.0, max(0.0, (t - w.warmup_s) / drift_s))
        kind = "code" if rng.random() < 0.1 + 0.8 * drift else "chat"
        qid = f"q-{seed}-{rate:g}-{n}"
        out.append(Arrival(t, "route_query", {"query_id": qid, "kind": kind}, qid))
    return out


def swe_schedule(w: Workload, batch: float, seed: int) -> list[Arrival]:
    """A fixed batch of items, all submitted at once."""
    return [Arrival(0.0, "swe_item", {"item": f"swe-{seed}-{i}"}, f"swe-{seed}-{i}")
            for i in range(int(batch))]


def workloads() -> dict[str, Workload]:
    return {
        "fa": Workload(
            "fa", "Financial analyst", time_scale=0.25,
            hosts=[Host(f"gpu{i}", FA_AGENTS) for i in range(4)],
            ray_args=["--engines", "4"], rebalance=None,
            rates=[2.0, 3.0, 4.0, 5.0], quick_rates=[3.0, 5.0],
            extra={"followups": 2.0, "think_s": 8.0}),
        "router": Workload(
            "router", "Router", time_scale=1.0,
            hosts=[Host("cls", "RouterClassifier", engine=False),
                   *(Host(f"chat{i}", "RouterChat", slots=1) for i in range(2)),
                   *(Host(f"code{i}", "RouterCoder", slots=1) for i in range(2))],
            ray_args=["--chat", "2", "--code", "2"], rebalance=EVEN_OUT,
            rates=[3.0, 5.0, 7.0, 9.0], quick_rates=[5.0, 7.0],
            startup_s=2.0, extra={"drift": 0.5},
            # the drift needs time next to a 2 s start-up
            quick_windows=(4.0, 24.0, 4.0, 15.0), quick_systems=("nalar", "static")),
        "swe": Workload(
            "swe", "Recursive software engineering", time_scale=0.25,
            hosts=[*(Host(f"plan{i}", "SWEPlanner", slots=1) for i in range(2)),
                   *(Host(f"dev{i}", "SWEDeveloper", slots=1) for i in range(2)),
                   *(Host(f"test{i}", "SWETester", slots=1) for i in range(2))],
            ray_args=["--planner", "2", "--developer", "2", "--tester", "2"],
            rebalance=EVEN_OUT, rates=[48.0, 96.0], quick_rates=[48.0], startup_s=2.0,
            quick_systems=("nalar", "static"),
            drain_s=240.0),
    }
