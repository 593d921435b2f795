"""A local controller on a fake bus (`fakebus`), with instances of the test's choosing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fakebus import FakeBus, FakeMsg
from nalar_common.authz import PolicyFile
from nalar_common.cluster import InstanceInfo
from nalar_common.guardrails import GuardrailFile
from nalar_local_controller.held import Held
from nalar_local_controller.service import LocalController
from nalar_local_controller.settings import LocalControllerSettings


def call_headers(future: str = "1", *, run: str = "r", agent: str = "A", session: str = "s",
                 **extra: str) -> dict[str, str]:
    return {"Nalar-Run": run, "Nalar-Future": future, "Nalar-Agent": agent,
            "Nalar-Method": "m", "Nalar-Session": session, **extra}


def instance(iid: str, *, agent: str = "A", node: str = "n1", concurrency: int = 1,
             **kw: Any) -> InstanceInfo:
    return InstanceInfo(instance=iid, host=f"h-{iid}", node=node, agent=agent,
                        concurrency=concurrency, ts=time.time(), **kw)


def controller(tmp_path: Path, *instances: InstanceInfo,
               **settings: Any) -> tuple[LocalController, FakeBus]:
    """A controller of node `n1` on a fake bus, with these instances live, not started."""
    bus = FakeBus()
    lc = LocalController(bus, "n1", LocalControllerSettings(**settings),  # type: ignore[arg-type]
                         access=PolicyFile.off(),
                         guardrails=GuardrailFile(tmp_path / "guardrails.yaml"))
    for info in instances:
        lc.view.instances[info.instance] = info
    lc.recovery.sync_instances()
    return lc, bus


@contextlib.asynccontextmanager
async def started(lc: LocalController) -> AsyncIterator[LocalController]:
    """The controller's task group running (what its parts spawn runs), its loops not."""
    async with asyncio.TaskGroup() as tg:
        lc.tasks.start(tg)
        yield lc


def held_call(future: str = "1", **kw: Any) -> Held:
    headers = call_headers(future, **kw)
    return Held(msgs=[FakeMsg(headers)], data=b"{}", headers=headers, run=headers["Nalar-Run"],
                future=future, agent=headers["Nalar-Agent"], session=headers["Nalar-Session"],
                priority=0, deps=[])
