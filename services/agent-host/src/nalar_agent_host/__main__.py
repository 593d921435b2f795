"""`python -m nalar_agent_host`: settings → logging → run until SIGTERM/SIGINT."""

from __future__ import annotations

from nalar.engines import LLMSettings, build_engine
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


if __name__ == "__main__":
    main()
