"""Service process lifecycle shared by every `python -m nalar_<name>` entry point.

Settings → logging → connect → run until SIGTERM/SIGINT; then stop intake, give in-flight
work a grace period, cancel, drain the NATS connection. Shutdown is idempotent, and bounded:
a process whose stop is still stuck `STUCK_AFTER_S` past the grace (a library that swallows
a cancellation, a blocked thread) writes every thread's and task's stack to stderr and
exits with code 70, so a stack never waits on it and its log says where it hung.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

from nalar_common import eventloop
from nalar_common.bus import Bus, connect
from nalar_common.configfile import config_errors_stop
from nalar_common.logging import configure_logging, get_logger
from nalar_common.settings import LogSettings, NatsSettings
from nalar_common.subjects import Names

log = get_logger(__name__)

STUCK_AFTER_S = 10.0  # past the grace: the stop is stuck, the process exits all the same
EXIT_STUCK = 70  # EX_SOFTWARE


class Shutdown(Exception):
    """Raised inside a service's TaskGroup once intake has stopped, to cancel its loops."""


class Service(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def connect_with_retry(settings: NatsSettings, names: Names, name: str,
                             timeout: float = 30.0) -> Bus:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await connect(settings, names, name=name)
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info("nats.connect_retry", error=str(exc))
            await asyncio.sleep(0.5)


async def run_service(name: str, nats: NatsSettings, build: Callable[[Bus], Awaitable[Service]],
                      grace_s: float = 15.0) -> None:
    """Run until the service ends; on SIGTERM/SIGINT ask it to stop, and cancel it if it has
    not finished within `grace_s` (a stop that hangs on the bus never keeps the process)."""
    bus = await connect_with_retry(nats, Names(nats.prefix), name)
    try:
        service = await build(bus)
        task = asyncio.create_task(service.run())
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            service.stop()
            loop.call_later(grace_s, task.cancel)
            watchdog = threading.Timer(grace_s + STUCK_AFTER_S, exit_stuck, (name, loop))
            watchdog.daemon = True
            watchdog.start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await task
        except asyncio.CancelledError:
            log.warning("service.stop_timed_out", service=name, grace_s=grace_s)
    finally:
        await bus.close()
        log.info("service.stopped", service=name)


def exit_stuck(name: str, loop: asyncio.AbstractEventLoop) -> None:
    """The stop did not end: say where everything is (threads, then asyncio tasks) and exit
    without waiting for anything more (from the watchdog thread)."""
    print(f'{{"event": "service.stop_stuck", "service": "{name}", "level": "error"}}',
          file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    try:
        for task in list(asyncio.all_tasks(loop)):
            print(f"--- task {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
    except Exception as exc:  # the loop's task set changed under us: the threads are out
        print(f"(tasks not listed: {exc!r})", file=sys.stderr)
    sys.stderr.flush()
    os._exit(EXIT_STUCK)


def serve(name: str, nats: NatsSettings, logs: LogSettings,
          build: Callable[[Bus], Awaitable[Service]]) -> None:
    configure_logging(logs, process=name)
    try:
        with config_errors_stop(name):
            eventloop.run(run_service(name, nats, build))
    except KeyboardInterrupt:
        pass
