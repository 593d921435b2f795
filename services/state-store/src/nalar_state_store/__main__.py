"""`python -m nalar_state_store`: settings → logging → run until SIGTERM/SIGINT."""

from __future__ import annotations

from nalar_common.process import serve
from nalar_common.settings import LogSettings, NatsSettings, RedisSettings
from nalar_common.state import SessionStore
from nalar_common.subjects import Names

from nalar_state_store.service import StateStore
from nalar_state_store.settings import StateStoreSettings


def main() -> None:
    nats, redis = NatsSettings(), RedisSettings()

    async def build(bus):  # type: ignore[no-untyped-def]
        return StateStore(bus, SessionStore.from_url(redis.url, Names(nats.prefix)),
                          StateStoreSettings())

    serve("state-store", nats, LogSettings(), build)


if __name__ == "__main__":
    main()
