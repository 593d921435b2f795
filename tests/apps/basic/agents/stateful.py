"""An agent with managed state: a per-session counter and history."""

from __future__ import annotations

import nalar


@nalar.agent(concurrency=4)
class Counter:
    def incr(self, by: int) -> int:
        counts = nalar.managed_dict("counts")
        counts["n"] = counts.get("n", 0) + by
        nalar.managed_list("history").append(by)
        return int(counts["n"])

    async def aincr(self, by: int) -> int:
        counts = nalar.managed_dict("counts")
        counts["n"] = counts.get("n", 0) + by
        return int(counts["n"])

    def incr_then_fail(self, by: int) -> None:
        nalar.managed_dict("counts")["n"] = 10_000 + by
        raise RuntimeError("changes of a failed call are discarded")

    def read(self) -> dict[str, object]:
        return {"n": nalar.managed_dict("counts").get("n", 0),
                "history": list(nalar.managed_list("history"))}
