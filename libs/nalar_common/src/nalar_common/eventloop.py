"""The event loop a service runs on: uvloop (libuv, in C) by default, the standard asyncio
loop with `NALAR_EVENT_LOOP=asyncio`.

Every message a service handles costs event-loop work (socket reads, callbacks, timers);
uvloop does that work in C. Nothing in Nalar depends on which loop runs it: both are tested.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from nalar_common.configfile import ConfigError

T = TypeVar("T")
LOOPS = ("uvloop", "asyncio")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop `NALAR_EVENT_LOOP` names (None: asyncio's default)."""
    name = os.environ.get("NALAR_EVENT_LOOP", "uvloop").strip().lower() or "uvloop"
    if name not in LOOPS:
        raise ConfigError(f"NALAR_EVENT_LOOP={name!r}: expected one of {', '.join(LOOPS)}")
    if name == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the configured loop."""
    try:
        factory = loop_factory()
    except ConfigError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
