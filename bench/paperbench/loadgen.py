"""Open-loop load over a gateway's HTTP API: runs posted at their scheduled times whatever
the system is doing, each session's follow-up after its think time and never before the
previous answer (a user reads it first); latency from the moment a run was due to its end."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL = ("succeeded", "failed", "cancelled")


def poisson(rng: random.Random, rate: float, start: float, end: float) -> Iterator[float]:
    """Arrival times of a Poisson process of `rate` from `start` until `end`."""
    t = start
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            return
        yield t


@dataclass
class Arrival:
    t: float  # seconds after the load starts
    workflow: str
    input: dict[str, Any]
    session: str
    after: int | None = None  # index of the session's previous arrival (a follow-up)


@dataclass
class Record:
    arrival: Arrival
    measured: bool
    status: str = "not sent"
    run_id: str = ""
    due: float = math.nan  # loop time the run was due (scheduled, or after its predecessor)
    latency_s: float = math.nan
    error: str = ""
    finished: asyncio.Event = field(default_factory=asyncio.Event)


async def _one(http: httpx.AsyncClient, rec: Record, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    a = rec.arrival
    try:
        r = await http.post(f"/v1/workflows/{a.workflow}/runs", params={"wait": 60},
                            json={"input": a.input, "session_id": a.session}, timeout=90)
        view = r.json()
        if r.status_code not in (200, 202):
            rec.status, rec.error = "rejected", f"HTTP {r.status_code}: {r.text[:200]}"
            return
        rec.run_id = str(view.get("run_id", ""))
        while view.get("status") not in FINAL:
            if loop.time() > deadline:
                rec.status = "unfinished"
                return
            await asyncio.sleep(0.2)
            view = (await http.get(f"/v1/runs/{rec.run_id}", timeout=30)).json()
        rec.latency_s = loop.time() - rec.due
        rec.status = str(view["status"])
        if rec.status != "succeeded":
            rec.error = json.dumps(view.get("error"))[:300]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        rec.status, rec.error = "error", f"{type(exc).__name__}: {exc}"[:300]
    finally:
        rec.finished.set()


async def drive(url: str, arrivals: list[Arrival], *, measure: tuple[float, float],
                drain_s: float, on_window: Callable[[str], Awaitable[None]]) -> list[Record]:
    """Post every arrival at its time; runs due in [measure) are counted, those after it
    (the cool-down) keep the load on while the counted ones finish, and are not counted.
    `on_window("start")` and `on_window("end")` run at the measuring window's edges (engine
    snapshots). Counted runs not finished `drain_s` after the window (after the last
    arrival, for a batch) are `unfinished`."""
    records = [Record(a, measure[0] <= a.t < measure[1]) for a in arrivals]
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=400)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=url, limits=limits, trust_env=False) as http:
        t0 = loop.time() + 0.2
        end = max((a.t for a in arrivals), default=0.0)
        deadline = t0 + (measure[1] if measure[1] < math.inf else end) + drain_s

        async def start(rec: Record) -> None:
            await asyncio.sleep(max(0.0, t0 + rec.arrival.t - loop.time()))
            if rec.arrival.after is not None:
                await records[rec.arrival.after].finished.wait()
            rec.due = max(t0 + rec.arrival.t, loop.time())
            if loop.time() > deadline:
                rec.status = "unfinished"
                rec.finished.set()
                return
            await _one(http, rec, deadline)

        async def edges() -> None:
            await asyncio.sleep(max(0.0, t0 + measure[0] - loop.time()))
            await on_window("start")
            await asyncio.sleep(max(0.0, t0 + measure[1] - loop.time()))
            await on_window("end")

        window = asyncio.create_task(edges())
        tasks = [asyncio.create_task(start(r)) for r in records]
        # the cool-down's runs are followed to their end too (by the same deadline): a client
        # that walks away can make a system drop the request (Ray Serve cancels it), which
        # would take load off the measured runs' tail and leave work behind for the next step
        _, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - loop.time() + 5))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if window.done() or measure[1] < math.inf:
            await window
        else:
            window.cancel()  # a batch: no window end to wait for
    for rec in records:
        if rec.status == "not sent":
            rec.status = "unfinished"
    return records


async def until_idle(busy_s: Callable[[], Awaitable[float]], timeout: float = 90.0) -> None:
    """Between steps: wait until the engines' summed busy time stops growing (nothing runs
    anywhere), polled once a second, for at most `timeout` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    last = -1.0
    while loop.time() < give_up:
        now = await busy_s()
        if now == last:
            return
        last = now
        await asyncio.sleep(1.0)
