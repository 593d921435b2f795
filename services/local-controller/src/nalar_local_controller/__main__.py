"""`python -m nalar_local_controller`: settings → logging → run until SIGTERM/SIGINT."""

from __future__ import annotations

from pathlib import Path

from nalar_common.authz import PolicyFile
from nalar_common.guardrails import GuardrailFile
from nalar_common.process import serve
from nalar_common.settings import (
    AuthSettings,
    GuardrailSettings,
    LogSettings,
    NatsSettings,
    NodeSettings,
    RedisSettings,
)
from nalar_common.state import SessionStore
from nalar_common.subjects import Names

from nalar_local_controller.service import LocalController
from nalar_local_controller.settings import LocalControllerSettings


def main() -> None:
    nats, node = NatsSettings(), NodeSettings()

    async def build(bus):  # type: ignore[no-untyped-def]
        store = SessionStore.from_url(RedisSettings().url, Names(nats.prefix))
        return LocalController(bus, node.name, LocalControllerSettings(), store=store,
                               access=PolicyFile(Path(AuthSettings().policy_file)),
                               guardrails=GuardrailFile(Path(GuardrailSettings().file)))

    serve(f"local-controller:{node.name}", nats, LogSettings(), build)


if __name__ == "__main__":
    main()
