"""In-memory stand-ins for what services talk to (NATS core and JetStream, direct gets from
streams), so their parts can be tested without a server: each records what was published,
and the streams answer from a dict the test fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names


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

    async def read_all(self, stream: str, subject: str, **_: Any) -> list[Any]:
        """What the stream holds on `subject` (the test fills `stored` with lists too)."""
        found = self.stored.get(subject, [])
        return list(found) if isinstance(found, list) else [found]

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
