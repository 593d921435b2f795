"""Agents of the governance test app for audit and replay: a tool that reaches outside (it
logs every real call to the file `GOVERNED_TOOL_LOG` names) and an LLM agent."""

from __future__ import annotations

import os
from typing import Any

import nalar


def _log(line: str) -> None:
    path = os.environ.get("GOVERNED_TOOL_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@nalar.agent(concurrency=4)
class Market:
    @nalar.tool
    def quote(self, symbol: str) -> dict[str, Any]:
        _log(f"quote {symbol}")
        return {"symbol": symbol, "price": 100 + len(symbol)}

    @nalar.tool(idempotent=False)
    def order(self, verdicts: list[str]) -> dict[str, Any]:
        _log(f"order {','.join(verdicts)}")
        return {"placed": len(verdicts), "verdicts": verdicts}


@nalar.agent(concurrency=4)
class Analyst:
    async def judge(self, quote: dict[str, Any]) -> dict[str, Any]:
        c = await nalar.llm.achat([{"role": "user", "content":
                                    f"{quote['symbol']} trades at {quote['price']}"}],
                                  max_tokens=8)
        return {"verdict": "buy" if quote["price"] < 150 else "sell", "note": c.text}
