"""In-memory stand-ins for what a local controller talks to (NATS core and JetStream, the
futures and runs streams), so its parts can be tested without a server: each records what
was published, and the streams answer from dicts the test fills."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nalar_common.authz import PolicyFile
from nalar_common.cluster import InstanceInfo
from nalar_common.guardrails import GuardrailFile
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names
from nalar_local_controller.held import Held
from nalar_local_controller.service import LocalController
from nalar_local_controller.settings import LocalControllerSettings


@dataclass
class Published:
    subject: str
    data: bytes
    headers: dict[str, str] | None = None
    reply: str = ""


class FakeNC:
    max_payload = 1_048_576

    def __init__(self) -> None:
        self.published: list[Published] = []

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        self.published.append(Published(subject, payload, headers, reply))


class _Ack:
    duplicate = False
    seq = 1


class FakeJS:
    def __init__(self) -> None:
        self.published: list[Published] = []

    async def publish(self, subject: str, payload: bytes = b"",
                      headers: dict[str, str] | None = None, **_: Any) -> _Ack:
        self.published.append(Published(subject, payload, headers))
        return _Ack()


class FakeBus:
    def __init__(self) -> None:
        self.names = Names()
        self.settings = NatsSettings()
        self.nc, self.js = FakeNC(), FakeJS()
        self.stored: dict[str, Any] = {}  # subject -> stored message (direct gets)
        self.gets = 0

    def on_reconnect(self, hook: Any) -> None:
        pass

    async def direct_get_last(self, stream: str, subject: str, **_: Any) -> Any:
        self.gets += 1
        return self.stored.get(subject)

    async def multi_last(self, stream: str, subjects: Any) -> dict[str, Any]:
        return {s: self.stored[s] for s in subjects if s in self.stored}

    def subjects(self) -> list[str]:
        return [p.subject for p in self.nc.published + self.js.published]


@dataclass
class FakeMsg:
    """A JetStream message as a push consumer hands it over."""

    headers: dict[str, str]
    data: bytes = b"{}"
    subject: str = "nalar.call.n1.A"
    delivered: int = 1
    acked: int = 0
    naked: int = 0
    termed: int = 0
    metadata: Any = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = type("Meta", (), {"num_delivered": self.delivered})()

    async def ack(self) -> None:
        self.acked += 1

    async def nak(self, delay: float | None = None) -> None:
        self.naked += 1

    async def term(self) -> None:
        self.termed += 1

    async def in_progress(self) -> None:
        pass


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
