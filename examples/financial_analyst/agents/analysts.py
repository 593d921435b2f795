"""The financial analyst example: an analyst fans out to four specialists in parallel and a
summarizer joins their findings. LLM calls go to the agent host's engine (`nalar.llm`)."""

from __future__ import annotations

import nalar


@nalar.agent(concurrency=4)
class StockAgent:
    def quote(self, ticker: str) -> dict[str, object]:
        """Price view for a ticker."""
        c = nalar.llm.generate(f"Give a stock outlook for {ticker}.", max_tokens=32)
        return {"ticker": ticker, "view": c.text, "tokens": c.completion_tokens}


@nalar.agent(concurrency=4)
class BondAgent:
    def outlook(self, ticker: str) -> dict[str, object]:
        """Credit and rates view for the issuer."""
        c = nalar.llm.generate(f"Give a bond and credit outlook for {ticker}.", max_tokens=32)
        return {"ticker": ticker, "view": c.text, "tokens": c.completion_tokens}


@nalar.agent(concurrency=4)
class MarketResearchAgent:
    async def report(self, ticker: str, question: str) -> dict[str, object]:
        """Sector research (an async method: runs on the event loop)."""
        c = await nalar.llm.agenerate(f"Research the sector of {ticker}: {question}",
                                      max_tokens=48)
        return {"ticker": ticker, "view": c.text, "tokens": c.completion_tokens}


@nalar.agent(concurrency=4)
class NewsAgent:
    def headlines(self, ticker: str) -> list[str]:
        """Recent headlines, as the news tool would return them."""
        c = nalar.llm.generate(f"Summarise recent news about {ticker}.", max_tokens=24)
        words = c.text.split()
        return [" ".join(words[i:i + 6]) for i in range(0, len(words), 6)]


@nalar.agent(concurrency=2)
class SummarizerAgent:
    def summarize(self, question: str, findings: dict[str, object]) -> str:
        """Join the specialists' findings into one answer."""
        parts = ", ".join(sorted(findings))
        c = nalar.llm.generate(f"Answer '{question}' using {parts}.", max_tokens=48)
        return f"{question} -> {c.text}"


@nalar.agent(concurrency=8)
class AnalystAgent:
    def analyze(self, ticker: str, question: str) -> dict[str, object]:
        """Fan out to four specialists in parallel; the summarizer waits for all four.

        The futures go straight into the summarizer's arguments (nested in a dict): the
        runtime resolves them before the summarizer runs, the analyst never waits on them.
        """
        stock = nalar.stub(StockAgent).quote(ticker)
        bond = nalar.stub(BondAgent).outlook(ticker)
        research = nalar.stub(MarketResearchAgent).report(ticker, question)
        news = nalar.stub(NewsAgent).headlines(ticker)
        summary = nalar.stub(SummarizerAgent).summarize(
            question, {"stock": stock, "bond": bond, "research": research, "news": news})
        return {"ticker": ticker, "summary": summary.value(timeout=120),
                "headlines": news.value(timeout=120)}
