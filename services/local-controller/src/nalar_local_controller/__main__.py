"""`python -m nalar_local_controller`: settings → logging → run until SIGTERM/SIGINT."""

from __future__ import annotations

from nalar_common.process import serve
from nalar_common.settings import LogSettings, NatsSettings, NodeSettings

from nalar_local_controller.service import LocalController
from nalar_local_controller.settings import LocalControllerSettings


def main() -> None:
    nats, node = NatsSettings(), NodeSettings()

    async def build(bus):  # type: ignore[no-untyped-def]
        return LocalController(bus, node.name, LocalControllerSettings())

    serve(f"local-controller:{node.name}", nats, LogSettings(), build)


if __name__ == "__main__":
    main()
