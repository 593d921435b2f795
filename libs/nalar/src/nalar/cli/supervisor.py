"""Keeps `nalar up`'s service processes running, as compose's `restart: unless-stopped` does:
streams each child's output under its name, starts a child that exited again after a backoff
(1 s, 2 s, 4 s ... 30 s; back to 1 s once it stayed up 30 s), and gives up on a child that
crash-loops (a sixth exit within 60 s, i.e. more than 5 restarts), which stops the stack, as
does a child that refused its configuration (exit code 2): starting it again cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from nalar_common.servers import die_with_parent

LINE_LIMIT = 1 << 20  # a longer log line is read in pieces, never an error
SHOWN_LINE = 16_384


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 30.0  # up this long: the next exit starts the backoff over
    max_restarts: int = 5  # within `window_s`; the exit after that is a crash loop
    window_s: float = 60.0
    fatal_codes: frozenset[int] = frozenset({2})  # a service's "refusing to start" (config)


@dataclass
class Restarts:
    """One child's restart history; pure (the caller passes the clock), so it is unit-tested
    without processes."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    count: int = field(default=0, init=False)  # restarts so far
    started_at: float = field(default=0.0, init=False)
    # exits in a row, each before `stable_after_s`: the backoff's exponent
    _streak: int = field(default=0, init=False)
    _recent: deque[float] = field(default_factory=deque, init=False)  # within `window_s`

    def started(self, now: float) -> None:
        self.started_at = now

    def next_delay(self, now: float) -> float | None:
        """The child exited at `now`: seconds to wait before starting it again, or None when
        it crash-loops (it was restarted `max_restarts` times within the last `window_s`)."""
        p = self.policy
        if now - self.started_at >= p.stable_after_s:
            self._streak = 0
        while self._recent and now - self._recent[0] > p.window_s:
            self._recent.popleft()
        if len(self._recent) >= p.max_restarts:
            return None
        delay = min(p.max_delay_s, p.first_delay_s * 2.0 ** min(self._streak, 32))
        self._streak += 1
        self.count += 1
        self._recent.append(now)
        return delay


@dataclass
class Child:
    name: str
    module: str
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None


class Supervisor:
    """Starts children (`python -m <module>`), streams their output, restarts them. After
    `stop()` nothing is started any more; stopping the running children is the caller's job
    (`Stack.shutdown`, in its order). A crash loop is reported to `give_up` with the reason."""

    def __init__(self, children: list[Child], say: Callable[[str], None],
                 give_up: Callable[[str], None], policy: RestartPolicy | None = None) -> None:
        self.children, self.say, self.give_up = children, say, give_up
        self.policy = policy or RestartPolicy()
        self.stopping = asyncio.Event()
        self._starting = asyncio.Lock()  # `stop()` waits out a start under way
        self._width = max((len(c.name) for c in children), default=0)

    async def start(self, child: Child) -> bool:
        """Start `child`; False (and nothing started) once stopping."""
        async with self._starting:
            if self.stopping.is_set():
                return False
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", child.module, env=child.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, preexec_fn=die_with_parent,
                start_new_session=True, limit=LINE_LIMIT)
        self.say(f"nalar up: started {child.name} (pid {child.proc.pid})")
        return True

    async def stop(self) -> None:
        """No child starts after this returns. Idempotent."""
        self.stopping.set()
        async with self._starting:
            pass

    async def watch(self, child: Child) -> None:
        """Stream `child`'s output until it exits, then start it again after the backoff, until
        stopping or a crash loop."""
        restarts = Restarts(self.policy)
        restarts.started(time.monotonic())
        while True:
            code = await self._pump(child)
            if self.stopping.is_set():
                return
            if code in self.policy.fatal_codes:
                self.give_up(f"{child.name} refused to start (exit code {code}; its log above "
                             f"says why)")
                return
            delay = restarts.next_delay(time.monotonic())
            if delay is None:
                p = self.policy
                self.give_up(f"{child.name} keeps crashing: it exited with code {code} after "
                             f"{p.max_restarts} restarts within {p.window_s:.0f}s")
                return
            self.say(f"nalar up: {child.name} exited with code {code}; restarting in "
                     f"{delay:.1f}s (restart {restarts.count})")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            if not await self.start(child):
                return
            restarts.started(time.monotonic())

    async def _pump(self, child: Child) -> int:
        assert child.proc is not None and child.proc.stdout is not None
        async for raw in _lines(child.proc.stdout):
            text = raw.decode(errors="replace").rstrip()
            if len(text) > SHOWN_LINE:
                text = f"{text[:SHOWN_LINE]}... [{len(text) - SHOWN_LINE} more characters]"
            self.say(f"{child.name:<{self._width}} | {text}")
        return await child.proc.wait()


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Lines of a child's output; a line over the reader's limit comes in chunks."""
    while True:
        try:
            line = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                yield exc.partial
            return
        except asyncio.LimitOverrunError as exc:
            line = await stream.readexactly(exc.consumed)
        yield line
