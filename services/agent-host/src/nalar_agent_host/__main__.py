"""`python -m nalar_agent_host`: settings → logging → run until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import sys
import threading

from nalar.hosting import LLMSettings, build_engine
from nalar_common.logging import get_logger
from nalar_common.process import serve
from nalar_common.settings import LogSettings, NatsSettings, NodeSettings, RedisSettings
from nalar_common.state import SessionStore
from nalar_common.subjects import Names

from nalar_agent_host.service import AgentHost
from nalar_agent_host.settings import AgentHostSettings


def main() -> None:
    nats, node, settings = NatsSettings(), NodeSettings(), AgentHostSettings()

    async def build(bus):  # type: ignore[no-untyped-def]
        store = SessionStore.from_url(RedisSettings().url, Names(nats.prefix))
        return AgentHost(bus, node.name, settings, store=store,
                         engine=build_engine(LLMSettings()))

    serve(f"agent-host:{settings.host_id}", nats, LogSettings(), build)
    exit_past_stuck_threads()


def exit_past_stuck_threads() -> None:
    """Sync user code still running in a worker thread past the drain cannot be cancelled;
    its call was handed back and runs again elsewhere. Leave without joining those threads
    (the interpreter would wait for them: a stack's stop once waited out a 30 s call)."""
    stuck = [t for t in threading.enumerate()
             if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if stuck:
        get_logger(__name__).warning("agent_host.threads_abandoned", threads=len(stuck))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
