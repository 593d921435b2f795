"""What a local controller tells the global controller about its node, every
`NALAR_LC_TELEMETRY_INTERVAL_S` (on `nalar.tel.<node>`); policies read it as maps
(`Telemetry.as_dict()`, see policies.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from nalar_common.wire.record import Message, Record, meaning


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceLoad(Record):
    """One agent instance of the node, as its controller's queue sees it (the values of
    `Telemetry.instances`). The global controller lays these over the instance's heartbeat,
    so the fields both have (`agent`, `host`, `inflight`, `concurrency`, `engine`) are
    required."""

    agent: str = field(metadata=meaning("agent name"))
    host: str = field(metadata=meaning("agent host id"))
    queue: int = field(metadata=meaning("calls queued for it"))
    queued_tokens: int = field(default=0, metadata=meaning("estimated tokens of the queue"))
    queued_work_s: float = field(default=0.0, metadata=meaning(
        "estimated seconds of work queued"))
    inflight: int = field(metadata=meaning("calls dispatched to it, not done"))
    concurrency: int = field(metadata=meaning("calls it runs at once"))
    service_s: float = field(default=0.0, metadata=meaning("mean service time per call"))
    p50_s: float = field(default=0.0, metadata=meaning(
        "median dispatch-to-done latency over its last 512 calls"))
    p99_s: float = field(default=0.0, metadata=meaning("99th percentile of the same"))
    sessions: int = field(default=0, metadata=meaning("distinct sessions queued or in flight"))
    oldest_age_s: float = field(default=0.0, metadata=meaning(
        "age of its oldest queued call"))
    oldest_session: str | None = field(default=None, metadata=meaning(
        "that call's session"))
    queued_sessions: list[str] = field(default_factory=list, metadata=meaning(
        "queued sessions, first in line first (at most 32)"))
    waiting: list[dict[str, Any]] = field(default_factory=list, metadata=meaning(
        "per queued session (at most 32): `session`, `calls`, `wait_s`, `priority`, "
        "`age_s`, `context_tokens`, `running_here`"))
    recent_sessions: list[Any] = field(default_factory=list, metadata=meaning(
        "`[session, last served at]` pairs, oldest first (at most 64): whose KV cache it "
        "holds"))
    engine: dict[str, Any] = field(metadata=meaning("its LLM engine's load, from its heartbeat"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Telemetry(Message):
    """One node's load."""

    KIND: ClassVar[str] = "telemetry"
    VERSION: ClassVar[int] = 1

    node: str = field(metadata=meaning("the node"))
    ts: float = field(metadata=meaning("unix s when it was taken"))
    instances: dict[str, InstanceLoad] = field(default_factory=dict, metadata=meaning(
        "instance id → its load"))
    held: int = field(default=0, metadata=meaning("calls the controller holds (unacked)"))
    unplaced: int = field(default=0, metadata=meaning("calls with no instance to go to"))
    waiting_deps: int = field(default=0, metadata=meaning(
        "calls waiting for their dependencies"))
    spawn_capacity: int = field(default=0, metadata=meaning(
        "more agent-host processes the controller may start"))
    stats: dict[str, int] = field(default_factory=dict, metadata=meaning(
        "counters since the controller started: `admitted`, `dispatched`, `completed`, "
        "`failed`, `forwarded`, `requeued`, `malformed`, `migrated`, `lease_transfers`, "
        "`provisioned`, `released`, `stolen`, `retried`, `dead_lettered`, `timed_out`, "
        "`reconciled`, `denied`, `guardrail_stops`"))
