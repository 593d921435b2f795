"""`python -m nalar_global_controller`: settings → logging → run until SIGTERM/SIGINT."""

from __future__ import annotations

from nalar_common.process import serve
from nalar_common.settings import LogSettings, NatsSettings

from nalar_global_controller.service import GlobalController
from nalar_global_controller.settings import GlobalControllerSettings


def main() -> None:
    nats, settings = NatsSettings(), GlobalControllerSettings()

    async def build(bus):  # type: ignore[no-untyped-def]
        return GlobalController(bus, settings)

    serve("global-controller", nats, LogSettings(), build)


if __name__ == "__main__":
    main()
