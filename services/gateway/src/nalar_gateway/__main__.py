"""`python -m nalar_gateway`: settings → logging → uvicorn serving the API until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvicorn
from nalar_common.auth import KeyStore
from nalar_common.authz import PolicyFile
from nalar_common.logging import configure_logging
from nalar_common.process import connect_with_retry
from nalar_common.settings import AuthSettings, LogSettings, NatsSettings, RedisSettings
from nalar_common.state import SessionStore
from nalar_common.subjects import Names

from nalar_gateway.app import create_app
from nalar_gateway.auth import Authenticator
from nalar_gateway.service import Gateway
from nalar_gateway.settings import GatewaySettings


def main() -> None:
    nats, redis, settings = NatsSettings(), RedisSettings(), GatewaySettings()
    auth = AuthSettings()
    configure_logging(LogSettings(), process="gateway")
    names = Names(nats.prefix)

    async def build() -> Gateway:
        bus = await connect_with_retry(nats, names, "gateway")
        store = SessionStore.from_url(redis.url, names)
        return Gateway(bus, store, settings, Authenticator(KeyStore(store.r, names), auth),
                       PolicyFile(Path(auth.policy_file)))

    config = uvicorn.Config(create_app(build), host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, lifespan="on")
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
