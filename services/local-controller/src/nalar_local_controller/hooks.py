"""Hooks on the call path. Each concern that decides about a call (authorization,
guardrails, cancellation, deadlines, replay, retries) is a `CallHook`; the controller runs the
hooks in order at each point, and a new concern (tracing, metrics, another policy) adds a hook
instead of a branch in the controller.

    before_admit(held, facts)  once its run's facts are known, before pin and dependencies
    before_place(held, facts)  its arguments are known, before it is queued on an instance
    after_done(held, done)     its host reported the dispatch over, before it is acked
    tick(now)                  every housekeeping round
    revisions()                the rules in force, named in each dispatch (the audit trail)

A hook that returns True has taken the call over (ended it, paused it, will run it again):
later hooks and the controller's own step do not see it.
"""

from __future__ import annotations

from nalar_common.wire import Done

from nalar_local_controller.held import Held
from nalar_local_controller.runs import RunFacts


class CallHook:
    """The no-op hook: override the points you need."""

    async def before_admit(self, held: Held, facts: RunFacts) -> bool:
        return False

    async def before_place(self, held: Held, facts: RunFacts) -> bool:
        return False

    async def after_done(self, held: Held, done: Done) -> bool:
        return False

    async def tick(self, now: float) -> None:
        return None

    def revisions(self) -> dict[str, str]:
        return {}


class Hooks:
    """The hooks in the order they run."""

    def __init__(self, hooks: list[CallHook]) -> None:
        self.hooks = hooks

    async def before_admit(self, held: Held, facts: RunFacts) -> bool:
        for hook in self.hooks:
            if await hook.before_admit(held, facts):
                return True
        return False

    async def before_place(self, held: Held, facts: RunFacts) -> bool:
        for hook in self.hooks:
            if await hook.before_place(held, facts):
                return True
        return False

    async def after_done(self, held: Held, done: Done) -> bool:
        for hook in self.hooks:
            if await hook.after_done(held, done):
                return True
        return False

    async def tick(self, now: float) -> None:
        for hook in self.hooks:
            await hook.tick(now)

    def revisions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for hook in self.hooks:
            out.update(hook.revisions())
        return out
