"""What the paper's three workloads do, shared by the Nalar app (`agents/`, `workflows/`) and
the Ray Serve peer (`bench/ray_peer/`), so both systems run the same work on the same
simulated engine (`nalar.engines.SimulatedEngine`).

Everything is deterministic in its inputs: prompts (hence output lengths, drawn by the
engine from the prompt), tool delays and SWE test outcomes. Delays are multiplied by the
engine's time scale (`NALAR_LLM_TIME_SCALE`), like the engine's own.

Parameters next to the paper's are in `bench/PAPER.md`.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from typing import Any

_WORDS = ("revenue", "margin", "guidance", "rates", "credit", "yield", "sector", "growth",
          "risk", "cash", "debt", "equity", "filing", "quarter", "demand", "supply", "price",
          "order", "ledger", "report", "table", "note", "segment", "asset", "loss")


def time_scale() -> float:
    return float(os.environ.get("NALAR_LLM_TIME_SCALE", "1.0"))


def _rng(*key: object) -> random.Random:
    return random.Random(hashlib.sha256("|".join(map(str, key)).encode()).digest())


def words(n: int, *key: object) -> str:
    rng = _rng("words", *key)
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def tool_delay_s(kind: str, *key: object, low: float = 0.5, high: float = 2.0) -> float:
    """A tool's wall time (web search, a test run): uniform in [low, high] engine seconds."""
    return _rng("tool", kind, *key).uniform(low, high) * time_scale()


# -- engines, per workload (`SimulatedParams` overrides; `NALAR_LLM_SIM_PARAMS` in Nalar) ------
ENGINE: dict[str, dict[str, Any]] = {
    # one engine per GPU shared by every agent of the host; sessions' KV caches stay there
    # (answers as long as the model would write, 400 tokens median, cut at the length the
    # session asks for: `fa_max_tokens`)
    "fa": {"max_batch": 16, "output_median_tokens": 400, "output_sigma": 0.5,
           "cache_capacity_tokens": 120_000},
    # a chat or coding model per GPU; past its KV budget an engine refuses work (an OOM)
    "router": {"max_batch": 64, "kv_budget_tokens": 6_000, "overload": "fail",
               "output_median_tokens": 120, "output_sigma": 0.7},
    # one model per agent type (planner, developer, tester)
    "swe": {"max_batch": 16, "output_median_tokens": 150, "output_sigma": 0.8},
}

# -- financial analyst ---------------------------------------------------------------------
FA_DOC_TOKENS = 3_000  # the filing / FinQA context the session starts with
FA_TURN_TOKENS = 200  # what each earlier turn adds to the session's context
FA_SPECIALISTS = ("stock", "bond", "research", "news")
FA_ROLE_CONCURRENCY = 1  # calls of one agent an engine's host runs at once
# how much a session asks for (a one-line take or a full report): log-normal across sessions,
# the same for all of a session's turns; heavy tail: a few sessions' long answers block
# whoever queues behind them, and a sticky session keeps its weight on one engine
FA_DETAIL_MEDIAN_TOKENS = 100
FA_DETAIL_SIGMA = 0.9
FA_MAX_TOKENS = 1_500


def fa_max_tokens(session: str) -> int:
    """The answer length a session asks for (`max_tokens` of each of its calls)."""
    n = _rng("detail", session).lognormvariate(math.log(FA_DETAIL_MEDIAN_TOKENS),
                                               FA_DETAIL_SIGMA)
    return max(30, min(FA_MAX_TOKENS, int(n)))


def fa_context(session: str, turn: int) -> str:
    """The session's context at a turn: its document, then what earlier turns said (the same
    words every time, so the engine's prefix cache of the session applies)."""
    parts = [words(FA_DOC_TOKENS, "doc", session)]
    parts += [words(FA_TURN_TOKENS, "turn", session, t) for t in range(turn)]
    return " ".join(parts)


def fa_prompt(role: str, session: str, ticker: str, question: str, turn: int) -> str:
    return f"{fa_context(session, turn)} [{role} t{turn}] {ticker}: {question}"


def fa_tool_s(role: str, session: str, turn: int) -> float:
    """Research and news agents search the web first (0.5-2 s); stock and bond read data."""
    if role not in ("research", "news"):
        return 0.0
    return tool_delay_s(role, session, turn)


# -- router ------------------------------------------------------------------------------
ROUTER_BRANCHES = ("chat", "code")
ROUTER_PROMPT_TOKENS = {"chat": 250, "code": 500}
ROUTER_MAX_TOKENS = 1_200


def classify_s(query_id: str) -> float:
    """The classifier is a small model on its own CPU: 50-200 ms."""
    return tool_delay_s("classify", query_id, low=0.05, high=0.2)


def router_prompt(branch: str, query_id: str) -> str:
    return f"{words(ROUTER_PROMPT_TOKENS[branch], branch, query_id)} [{branch}] {query_id}"


# -- recursive software engineering -------------------------------------------------------
SWE_SUBTASKS = 4  # developer subtasks per plan
SWE_FAIL_P = 0.4  # the tester rejects the work and it re-enters at the planner
SWE_MAX_DEPTH = 3  # attempts per item at most
SWE_MAX_TOKENS = 1_000


def swe_prompt(role: str, item: str, depth: int, part: int = 0) -> str:
    size = {"planner": 600, "developer": 900, "tester": 400}[role]
    return f"{words(size, role, item)} [{role} d{depth} p{part}] {item}"


def swe_doc_s(item: str, depth: int, part: int) -> float:
    """Documentation retrieval (a vector search): 10-50 ms."""
    return tool_delay_s("docs", item, depth, part, low=0.01, high=0.05)


def swe_test_fails(item: str, depth: int, p: float = SWE_FAIL_P) -> bool:
    return depth + 1 < SWE_MAX_DEPTH and _rng("test", item, depth).random() < p
