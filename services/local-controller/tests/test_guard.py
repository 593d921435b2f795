"""CallGuard against a real valkey-server: each measure stops the spend that would cross its
limit and not the one before; counts are shared, once per future, and atomic under
concurrency; settling replaces a reservation by what was used; a lifted limit stops nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from nalar_common.auth import Principal
from nalar_common.guardrails import Breach, GuardrailFile, waive
from nalar_common.subjects import Names
from nalar_local_controller.access import RunFacts
from nalar_local_controller.guard import CallGuard


@pytest.fixture
async def guard(redis_url: str, names: Names, tmp_path: Path) -> AsyncIterator[CallGuard]:
    client = aioredis.Redis.from_url(redis_url)
    yield CallGuard(client, names, GuardrailFile(tmp_path / "guardrails.yaml",
                                                 check_every_s=0.0))
    await client.aclose()


def use(guard: CallGuard, text: str) -> None:
    guard.file.path.write_text(text)


async def admit(guard: CallGuard, run: RunFacts, *call: str) -> Breach | None:
    return await guard.admit(run, guard.limits(run), *call)


def facts(run: str = "r1", *, tenant: str = "acme", session: str = "s1",
          started: float | None = None) -> RunFacts:
    return RunFacts(run, Principal("alice", ("analyst",), tenant), "wf", session,
                    time.time() if started is None else started)


async def test_iterations_stop_the_call_past_the_limit_once_per_future(
        guard: CallGuard) -> None:
    use(guard, "limits: [{name: critic, iterations: 2, agent: Critic}]")
    run = facts()
    assert await admit(guard, run, "1", "Critic", "review", "s1") is None
    assert await admit(guard, run, "1", "Critic", "review", "s1") is None  # same future again
    assert await admit(guard, run, "2", "Other", "x", "s1") is None  # not counted
    assert await admit(guard, run, "3", "Critic", "review", "s1") is None  # the 2nd: at limit
    breach = await admit(guard, run, "4", "Critic", "review", "s1")
    assert breach is not None and breach.value == 2 and breach.limit.name == "critic"
    assert await admit(guard, facts("r2"), "1", "Critic", "review", "s1") is None  # per run


async def test_tokens_reserve_the_worst_case_and_settle_to_what_was_used(
        guard: CallGuard) -> None:
    use(guard, "limits: [{name: t, tokens: 100, action: abort}]")
    run = facts("r3")
    breach, held = await guard.reserve(run, "s1", "simulated", 20, 40)  # worst case 60
    assert breach is None and [h.amount for h in held] == [60.0]
    breach, _ = await guard.reserve(run, "s1", "simulated", 20, 30)  # 60 + 50 > 100
    assert breach is not None and breach.value == 60 and breach.add == 50
    await guard.settle(held, "simulated", 20, 10, ok=True)  # it used 30
    breach, held2 = await guard.reserve(run, "s1", "simulated", 20, 50)  # 30 + 70 = 100
    assert breach is None
    await guard.settle(held2, "simulated", 0, 0, ok=False)  # failed: counts nothing
    breach, _ = await guard.reserve(run, "s1", "simulated", 20, 51)  # 30 + 71 > 100
    assert breach is not None and breach.limit.action == "abort"


async def test_parallel_requests_never_pass_a_limit_together(guard: CallGuard) -> None:
    use(guard, "limits: [{name: calls, llm_calls: 5, scope: session}]")
    results = await asyncio.gather(*(guard.reserve(facts(f"p{i}", session="shared"), "shared",
                                                   "m", 1, 1) for i in range(20)))
    assert sum(1 for breach, _ in results if breach is None) == 5


async def test_cost_uses_the_model_price_and_tenants_count_across_runs(
        guard: CallGuard) -> None:
    use(guard, "prices: {pricey: {prompt: 1000000, completion: 2000000}, "
               "default: {prompt: 0}}\n"
               "limits: [{name: spend, cost: 10, scope: tenant, window: 1h}]")
    tenant = f"t{time.time_ns()}"
    # 2 prompt + 2 completion tokens at $1 and $2 each: $6 worst case
    assert (await guard.reserve(facts("c1", tenant=tenant), "s", "pricey", 2, 2))[0] is None
    breach, _ = await guard.reserve(facts("c2", tenant=tenant), "s", "pricey", 2, 2)
    assert breach is not None and breach.value == 6 and breach.add == 6
    other = await guard.reserve(facts("c3", tenant=tenant + "x"), "s", "pricey", 2, 2)
    assert other[0] is None


async def test_wall_time_and_a_lifted_limit(guard: CallGuard, names: Names) -> None:
    use(guard, "limits: [{name: slow, wall_s: 5, action: pause}]")
    young, old = facts("w1", started=time.time() - 4), facts("w2", started=time.time() - 6)
    assert await admit(guard, young, "1", "A", "m", "s1") is None
    breach = await admit(guard, old, "1", "A", "m", "s1")
    assert breach is not None and breach.limit.action == "pause" and breach.value > 5
    await waive(guard.r, names, "w2", ["slow"])
    assert await admit(guard, old, "2", "A", "m", "s1") is None


async def test_match_limits_bind_only_their_principals(guard: CallGuard) -> None:
    use(guard, "limits: [{name: zeta-only, llm_calls: 0, match: {tenant: zeta}}]")
    assert (await guard.reserve(facts("m1", tenant="acme"), "s", "m", 1, 1))[0] is None
    assert (await guard.reserve(facts("m2", tenant="zeta"), "s", "m", 1, 1))[0] is not None


async def test_an_execution_limit_counts_each_call_on_its_own(guard: CallGuard) -> None:
    use(guard, "limits: [{name: per-call, tokens: 100, scope: execution}]")
    run = facts("r-exec")
    breach, held = await guard.reserve(run, "s1", "m", 20, 40, "1")  # worst case 60
    assert breach is None
    await guard.settle(held, "m", 20, 40, ok=True)
    breach, _ = await guard.reserve(run, "s1", "m", 20, 40, "1")  # 60 + 60 > 100
    assert breach is not None and breach.limit.scope == "execution" and breach.value == 60
    breach, _ = await guard.reserve(run, "s1", "m", 20, 40, "2")  # another call: its own
    assert breach is None


def test_an_execution_limit_is_on_what_one_call_spends(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("limits: [{name: x, iterations: 3, scope: execution}]")
    with pytest.raises(Exception, match=r"per execution .* tokens, cost or llm_calls"):
        GuardrailFile(path, check_every_s=0.0).require()
