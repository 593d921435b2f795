"""`python -m nalar_gateway`: settings → logging → uvicorn serving the API until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

import uvicorn
from nalar_common.logging import configure_logging
from nalar_common.process import connect_with_retry
from nalar_common.settings import LogSettings, NatsSettings, RedisSettings
from nalar_common.state import SessionStore
from nalar_common.subjects import Names

from nalar_gateway.app import create_app
from nalar_gateway.service import Gateway
from nalar_gateway.settings import GatewaySettings


def main() -> None:
    nats, redis, settings = NatsSettings(), RedisSettings(), GatewaySettings()
    configure_logging(LogSettings(), process="gateway")
    names = Names(nats.prefix)

    async def build() -> Gateway:
        bus = await connect_with_retry(nats, names, "gateway")
        return Gateway(bus, SessionStore.from_url(redis.url, names), settings)

    config = uvicorn.Config(create_app(build), host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, lifespan="on")
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
