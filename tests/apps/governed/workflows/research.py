"""Audit and replay workflow of the governance test app: quotes (a tool), a verdict on each
(an LLM agent, taking the quote's future), then optionally orders (a tool with effects)."""

from __future__ import annotations

from typing import Any

import nalar
from agents.market import Analyst, Market


@nalar.workflow
def research(symbols: list[str], order: bool = False) -> dict[str, Any]:
    market, analyst = nalar.stub(Market), nalar.stub(Analyst)
    quotes = [market.quote(s) for s in symbols]
    verdicts = [analyst.judge(q) for q in quotes]
    out: dict[str, Any] = {"quotes": [q.value(timeout=60) for q in quotes],
                           "verdicts": [v.value(timeout=60) for v in verdicts]}
    if order:
        out["order"] = market.order([v["verdict"] for v in out["verdicts"]]).value(timeout=60)
    return out
