"""`python -m nalar_global_controller`: settings → policies → logging → run until
SIGTERM/SIGINT. Policies that cannot be used (`NALAR_GC_POLICIES` naming a class that is not
allowed, or bad params) stop it at start with one line on stderr."""

from __future__ import annotations

import sys
from typing import NoReturn

from nalar_common.bus import Bus
from nalar_common.process import serve
from nalar_common.settings import LogSettings, NatsSettings, PolicyClassSettings

from nalar_global_controller.policies import PolicyAllowList, load_policies
from nalar_global_controller.service import GlobalController
from nalar_global_controller.settings import GlobalControllerSettings


def _refuse(why: str) -> NoReturn:
    print(f"global-controller: refusing to start: {why}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def main() -> None:
    nats, settings = NatsSettings(), GlobalControllerSettings()
    try:
        allowed = PolicyAllowList.load(PolicyClassSettings())
    except ValueError as exc:
        _refuse(str(exc))
    try:
        policies = load_policies(settings.policies, allowed)
    except ValueError as exc:
        _refuse(f"NALAR_GC_POLICIES: {exc}")

    async def build(bus: Bus) -> GlobalController:
        return GlobalController(bus, settings, policies, allowed=allowed)

    serve("global-controller", nats, LogSettings(), build)


if __name__ == "__main__":
    main()
