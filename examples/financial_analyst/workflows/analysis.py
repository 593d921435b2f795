"""Workflows of the financial analyst example."""

from __future__ import annotations

import nalar
from agents.analysts import AnalystAgent


@nalar.workflow
def financial_analysis(ticker: str, question: str = "Should I buy?") -> dict[str, object]:
    """Ask the analyst about one ticker; the analyst fans out to four specialists."""
    return nalar.stub(AnalystAgent).analyze(ticker, question).value(timeout=300)


@nalar.workflow
async def compare(tickers: list[str], question: str = "Which is stronger?") -> dict[str, object]:
    """An async driver: one analysis per ticker, all in parallel."""
    analyst = nalar.stub(AnalystAgent)
    futures = {t: analyst.analyze(t, question) for t in tickers}
    return {t: await f for t, f in futures.items()}
