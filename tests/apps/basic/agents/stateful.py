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


@nalar.agent(stateful=True, concurrency=8)
class Conversation:
    """Stateful: a session's calls reach one instance, one at a time, in order; so this
    in-memory history (not managed state) stays right for the session."""

    def __init__(self) -> None:
        self.turns: dict[str, list[int]] = {}

    def say(self, i: int) -> dict[str, object]:
        import os
        import time

        time.sleep(0.01)  # long enough to overlap if two turns ran at once
        turns = self.turns.setdefault(nalar.current_session_id() or "", [])
        turns.append(i)
        return {"pid": os.getpid(), "turns": list(turns)}
