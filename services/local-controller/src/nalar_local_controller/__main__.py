"""`python -m nalar_local_controller`: settings → logging → run until SIGTERM/SIGINT."""

from __future__ import annotations

from nalar_common.authz import open_policy
from nalar_common.configfile import config_errors_stop
from nalar_common.guardrails import open_guardrails
from nalar_common.logging import configure_logging
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
    nats, node, logs = NatsSettings(), NodeSettings(), LogSettings()
    name = f"local-controller:{node.name}"
    configure_logging(logs, process=name)
    # the rules it enforces, loaded before anything starts: a bad file stops it here
    with config_errors_stop(f"nalar-local-controller:{node.name}"):
        access, guardrails = open_policy(AuthSettings()), open_guardrails(GuardrailSettings())

    async def build(bus):  # type: ignore[no-untyped-def]
        store = SessionStore.from_url(RedisSettings().url, Names(nats.prefix))
        return LocalController(bus, node.name, LocalControllerSettings(), store=store,
                               access=access, guardrails=guardrails)

    serve(name, nats, logs, build)


if __name__ == "__main__":
    main()
