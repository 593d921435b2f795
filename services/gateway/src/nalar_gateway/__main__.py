"""`python -m nalar_gateway`: settings → logging → uvicorn serving the API until SIGTERM/SIGINT.

Settings the gateway cannot work with stop it before it serves: one line on stderr
(`nalar-gateway: <what is wrong>`) and exit status 2.
"""

from __future__ import annotations

import sys

import uvicorn
from nalar_common import eventloop
from nalar_common.auth import KeyStore
from nalar_common.authz import open_policy
from nalar_common.configfile import ConfigError
from nalar_common.logging import configure_logging
from nalar_common.policyspec import PolicyAllowList
from nalar_common.process import connect_with_retry
from nalar_common.settings import (
    AuthSettings,
    LogSettings,
    NatsSettings,
    PolicyClassSettings,
    RedisSettings,
)
from nalar_common.state import SessionStore
from nalar_common.subjects import Names

from nalar_gateway.app import create_app
from nalar_gateway.auth import Authenticator
from nalar_gateway.service import Gateway
from nalar_gateway.settings import GatewaySettings

CONFIG_EXIT = 2


async def serve(nats: NatsSettings, redis: RedisSettings, settings: GatewaySettings,
                auth: AuthSettings) -> None:
    names = Names(nats.prefix)
    store = SessionStore.from_url(redis.url, names)  # connects on first use
    try:
        # built here, not in the lifespan, so bad settings stop the process before uvicorn
        # starts (an error in the lifespan is a traceback and a "startup failed" log line)
        authenticator = Authenticator(KeyStore(store.r, names), auth)
        access = open_policy(auth)  # a missing, empty or invalid policy file stops it here
        try:
            policy_classes = PolicyAllowList.load(PolicyClassSettings())
        except ValueError as exc:  # a malformed NALAR_POLICIES_ALLOW
            raise ConfigError(str(exc)) from None
    except ConfigError:
        await store.close()
        raise

    async def build() -> Gateway:
        bus = await connect_with_retry(nats, names, "gateway")
        return Gateway(bus, store, settings, authenticator, access,
                       policy_classes=policy_classes)

    # open event streams (and `?wait`s) end after the grace period instead of holding the
    # process until it is killed
    config = uvicorn.Config(create_app(build), host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=settings.shutdown_grace_s)
    await uvicorn.Server(config).serve()


def main() -> None:
    nats, redis, settings = NatsSettings(), RedisSettings(), GatewaySettings()
    auth = AuthSettings()
    configure_logging(LogSettings(), process="gateway")
    try:
        eventloop.run(serve(nats, redis, settings, auth))
    except ConfigError as exc:
        print(f"nalar-gateway: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(CONFIG_EXIT) from None


if __name__ == "__main__":
    main()
