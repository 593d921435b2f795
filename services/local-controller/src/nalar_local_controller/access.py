"""Authorization of every agent call, with the principal that started the call's run (read
from the run's `created` event, which only the gateway writes; never from the call)."""

from __future__ import annotations

from nalar_common.authz import PolicyFile
from nalar_common.errors import PermissionDenied
from nalar_common.logging import get_logger
from nalar_common.subjects import DRIVER_AGENT

from nalar_local_controller.book import Book
from nalar_local_controller.held import Held
from nalar_local_controller.hooks import CallHook
from nalar_local_controller.outcomes import Outcomes
from nalar_local_controller.runs import RunFacts

log = get_logger(__name__)


def check(policy_file: PolicyFile, facts: RunFacts, agent: str,
          method: str) -> PermissionDenied | None:
    """None when the run's principal may call `agent.method`; the error otherwise."""
    policy = policy_file.current()
    if policy.open or (agent.startswith("_") and agent != DRIVER_AGENT):
        return None  # authorization off (explicitly), or the runtime's own pseudo-agents
    principal = facts.principal
    if agent == DRIVER_AGENT:  # the run's driver: its method is the workflow
        decision = policy.workflow(principal, method)
        what = f"workflow {method!r}"
    else:
        decision = policy.call(principal, facts.workflow, agent, method)
        what = f"{agent}.{method}"
    if decision.allowed:
        return None
    log.info("call.denied", run_id=facts.run, agent=agent, method=method,
             principal=principal.name, rule=decision.rule, policy=decision.revision)
    return PermissionDenied(decision.why(what, principal), details={
        "agent": agent, "method": method, "principal": principal.name,
        "rule": decision.rule, "policy_revision": decision.revision})


class Authorization(CallHook):
    """policy.yaml decides whether the run's principal may make the call."""

    def __init__(self, policy: PolicyFile, book: Book, outcomes: Outcomes) -> None:
        self.policy, self.book, self.outcomes = policy, book, outcomes

    async def before_admit(self, held: Held, facts: RunFacts) -> bool:
        denied = check(self.policy, facts, held.agent, held.method)
        if denied is None:
            return False
        self.book.stats["denied"] += 1
        await self.outcomes.fail(held, denied)
        return True

    def revisions(self) -> dict[str, str]:
        return {"access": self.policy.current().revision}
