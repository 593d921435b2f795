"""Replays in the control plane: a call of a replay run, once its arguments are known, is
answered here from the original run instead of running, when it can be:

- its future was overridden (`--override FUTURE=VALUE`): that value;
- the original run made the same call (same future, same arguments' digest): its recorded
  result (value or error);
- otherwise a tool (`@nalar.tool`) fails with `ReplayDiverged`: a replay never reaches out;
- otherwise the call runs again (its inputs changed): its host serves the LLM answers the
  original recorded for the same requests and asks the engine for the rest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nalar_common.bus import Bus
from nalar_common.calls import CallSpec
from nalar_common.cluster import ClusterView
from nalar_common.digest import args_digest
from nalar_common.envelope import FutureRef, substitute_refs
from nalar_common.errors import NalarError, ReplayDiverged
from nalar_common.futures import FutureWaiter
from nalar_common.journal import Event, decode
from nalar_common.logging import get_logger
from nalar_common.subjects import DRIVER_AGENT
from nalar_common.subjects import Headers as H

from nalar_local_controller.book import Book, Tasks
from nalar_local_controller.held import Held
from nalar_local_controller.hooks import CallHook
from nalar_local_controller.runs import RunFacts

if TYPE_CHECKING:
    from nalar_local_controller.outcomes import Outcomes

log = get_logger(__name__)


@dataclass(frozen=True)
class Answer:
    source: str  # override | journal | diverged | live
    value: Any = None
    error: NalarError | None = None
    digest: str = ""  # the call's arguments' digest
    tool: bool = False


class Replays:
    def __init__(self, bus: Bus, waiter: FutureWaiter, cache_size: int = 256) -> None:
        self.bus, self.waiter, self.cache_size = bus, waiter, cache_size
        self._calls: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()

    async def answer(self, facts: RunFacts, held: Held, tools: set[str]) -> Answer:
        """`tools`: the agent's tool methods (from its instances' heartbeats)."""
        fid, original = held.future, facts.replay_of
        method = held.headers.get(H.METHOD, "")
        recorded = (await self._recorded(original)).get(fid)
        if recorded is not None and (recorded.get("agent"), recorded.get("method")) != (
                held.agent, method):
            recorded = None  # the same place asks another agent now: nothing to serve
        digest = _digest(held)
        tool = method in tools or (recorded or {}).get("kind") == "tool"
        if fid in facts.overrides:
            return Answer("override", facts.overrides[fid], digest=digest, tool=tool)
        if recorded is not None and recorded.get("args_digest") == digest:
            stored = await self.waiter.get(original, fid)
            if stored is not None:
                err = stored.error()
                return Answer("journal", None if err else stored.value(), err, digest, tool)
        if tool:
            what = f"{held.agent}.{method}"
            why = "with other arguments than" if recorded is not None else "which was not in"
            return Answer("diverged", digest=digest, tool=True, error=ReplayDiverged(
                f"replay reached tool {what} (future {fid}) {why} run {original}; a replay "
                f"never runs tools: override future {fid} to give it a result",
                details={"future": fid, "replay_of": original, "args_digest": digest,
                         "recorded_digest": (recorded or {}).get("args_digest")}))
        return Answer("live")

    async def _recorded(self, run: str) -> dict[str, dict[str, Any]]:
        """The original run's calls as its journal resolved them: future -> last entry."""
        hit = self._calls.get(run)
        if hit is not None:
            self._calls.move_to_end(run)
            return hit
        n = self.bus.names
        calls: dict[str, dict[str, Any]] = {}
        for m in await self.bus.read_all(n.runs_stream, n.run_event(run, Event.FUTURE_RESOLVED)):
            ev = decode(m)
            calls[str(ev.get("future"))] = ev
        self._calls[run] = calls
        if len(self._calls) > self.cache_size:
            self._calls.popitem(last=False)
        return calls


def _digest(held: Held) -> str:
    """The call's arguments' digest as its host computes it: dependencies by their values."""
    call = CallSpec.decode(held.data)
    values = {FutureRef(held.run, f): r.value() for f, r in held.dep_results.items()}
    if not values:
        return args_digest(call.args, call.kwargs)
    return args_digest(substitute_refs(call.args, values), substitute_refs(call.kwargs, values))


class ReplayHook(CallHook):
    """A call of a replay run, once its arguments are known, is answered from the original
    run instead of running when it can be (overridden, asked the same, or a tool)."""

    AGAIN_S = 2.0

    def __init__(self, replays: Replays, view: ClusterView, book: Book, tasks: Tasks,
                 outcomes: Outcomes) -> None:
        self.replays, self.view, self.book, self.tasks = replays, view, book, tasks
        self.outcomes = outcomes
        self.again: Callable[[Held], Awaitable[None]] | None = None  # wired: place it again

    async def before_place(self, held: Held, facts: RunFacts) -> bool:
        if not held.replay_of or held.agent == DRIVER_AGENT:
            return False
        try:
            tools = {t for i in self.view.live_instances(held.agent) for t in i.tools}
            answer = await self.replays.answer(facts, held, tools)
        except Exception as exc:  # NATS away: keep the call, decide again later
            log.warning("replay.answer_retry", run_id=held.run, future_id=held.future,
                        error=str(exc))
            assert self.again is not None
            self.tasks.later(self.AGAIN_S, self.book, held, self.again)
            return True
        if answer.source == "diverged":
            assert answer.error is not None
            await self.outcomes.fail(held, answer.error)
            return True
        if answer.source != "live":
            await self.outcomes.answer_from_replay(held, answer)
            return True
        return False
