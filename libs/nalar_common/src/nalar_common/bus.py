"""NATS helpers: connect, idempotent stream and bucket bootstrap, direct gets, drain on exit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from nalar_common.errors import Unavailable
from nalar_common.logging import get_logger
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names

log = get_logger(__name__)

MAX_CONSUMERS = 20_000
MULTI_LAST_BATCH = 1000  # nats-server answers 413 past 1024 results per batch direct get
READ_ALL_PAGE_BYTES = 8 << 20  # a page of `read_all` stops past this (no flow control)
_ESSENTIAL = ("subjects", "retention", "max_msgs_per_subject", "allow_direct", "discard")
NO_STORAGE = 10047  # JetStream: insufficient storage resources (to reserve max_bytes)


class TooManyResults(Exception):
    """A batch direct get matched more messages than the server returns in one batch."""


@dataclass(slots=True)
class StoredMsg:
    """A message read back from a stream (direct get)."""

    subject: str
    data: bytes
    headers: dict[str, str]
    seq: int
    timestamp: str | None = None


class Bus:
    """One NATS connection with its JetStream context and the names it uses."""

    def __init__(self, nc: NATS, names: Names, settings: NatsSettings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.names = names
        self.settings = settings
        self._reconnect_hooks: list[Callable[[], Awaitable[None]]] = []

    def on_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` after every reconnect (core subscriptions missed messages meanwhile)."""
        self._reconnect_hooks.append(hook)

    async def _reconnected(self) -> None:
        log.info("nats.reconnected", url=self.nc.connected_url and self.nc.connected_url.netloc)
        for hook in self._reconnect_hooks:
            try:
                await hook()
            except Exception:
                log.exception("nats.reconnect_hook_failed")

    async def close(self) -> None:
        """Drain (flush pending publishes, end subscriptions) then close; idempotent."""
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout=5)
        except Exception:
            await self.nc.close()

    # -- bootstrap -----------------------------------------------------------
    async def ensure_topology(self) -> None:
        """Create or update every stream and bucket Nalar uses; safe to call from every process.

        NALAR_CALLS and NALAR_RUNS have a byte limit with discard policy `new`: when one is
        full a publish to it fails (the publisher sees the error and retries or fails the
        call), and nothing stored is ever deleted to make room. Gateways stop admitting runs
        well before that (`streams_high_water`, nalar_gateway.capacity), so the runs they
        accepted keep room to finish."""
        n, s = self.names, self.settings
        await self._ensure_stream(StreamConfig(
            name=n.calls_stream, subjects=[n.all_calls], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, duplicate_window=120, max_consumers=MAX_CONSUMERS,
            allow_direct=True, max_bytes=_limit(s.calls_max_bytes), discard=DiscardPolicy.NEW))
        await self._ensure_stream(StreamConfig(
            name=n.futures_stream, subjects=[n.all_futures], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, max_msgs_per_subject=1, allow_direct=True,
            duplicate_window=120, max_age=s.futures_max_age_s, max_consumers=MAX_CONSUMERS,
            discard=DiscardPolicy.OLD))
        await self._ensure_stream(StreamConfig(
            name=n.runs_stream, subjects=[n.all_run_events], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, allow_direct=True, duplicate_window=120,
            max_age=s.runs_max_age_s, max_consumers=MAX_CONSUMERS,
            max_bytes=_limit(s.runs_max_bytes), discard=DiscardPolicy.NEW))
        await self._ensure_stream(StreamConfig(
            name=n.dlq_stream, subjects=[n.all_dlq], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, allow_direct=True, max_age=s.dlq_max_age_s,
            max_msgs=s.dlq_max_msgs, discard=DiscardPolicy.OLD))
        await self.values_bucket()
        await self.kv(n.policy_bucket, history=10)
        await self.kv(n.instances_bucket, history=1, ttl=s.instance_ttl_s)
        # a pin lives `pins_ttl_s` from its last write (KV max_age; pins are written when a
        # session first needs one and again only when its instance is gone): an old bucket,
        # or one made with another TTL, follows the settings like a stream's max_age
        pins_ttl = s.runs_max_age_s if s.pins_ttl_s is None else s.pins_ttl_s
        pins = await self.kv(n.pins_bucket, history=1, ttl=pins_ttl if pins_ttl > 0 else None)
        status = await pins.status()
        if (status.ttl or 0) != max(pins_ttl, 0):
            config = status.stream_info.config
            config.max_age = max(pins_ttl, 0)
            if config.max_age:  # the server wants the duplicate window within max_age
                config.duplicate_window = min(config.duplicate_window or 120, config.max_age)
            log.info("stream.updated", stream=config.name)
            await self.js.update_stream(config)

    async def _ensure_stream(self, config: StreamConfig) -> None:
        """Create the stream; if it exists, fix what correctness depends on, its retention
        (`max_age`) and, where the config sets one, its byte limit: both follow the settings
        on every process start (keep them equal everywhere; change them with the settings, not
        `nats stream edit`). Other limits (`max_msgs`, `duplicate_window`, `max_consumers`)
        keep what an operator (or the first process) set.

        JetStream reserves a stream's `max_bytes` from the server's storage when the stream
        is made: a server without that much room refuses (10047). The stream is then made
        (or kept) without the limit, loudly: publishes still fail, and nothing is dropped,
        when the server's storage is full, but gateways no longer refuse runs before."""
        try:
            await self.js.add_stream(config)
            return
        except BadRequestError as exc:
            if exc.err_code != 10058:  # exists with another configuration
                raise
        except APIError as exc:
            if exc.err_code != NO_STORAGE or (config.max_bytes or -1) < 0:
                raise
            _unreserved(config, exc)
            config.max_bytes = -1
            await self._ensure_stream(config)
            return
        assert config.name is not None
        current = (await self.js.stream_info(config.name)).config
        kept = ["max_msgs", "duplicate_window", "max_consumers"]
        if config.max_bytes is None:
            kept.append("max_bytes")
        if all(getattr(current, f) == getattr(config, f) for f in _ESSENTIAL) and \
                (current.max_age or 0) == (config.max_age or 0) and \
                (config.max_bytes is None or current.max_bytes == config.max_bytes):
            return
        for f in kept:
            setattr(config, f, getattr(current, f))
        log.info("stream.updated", stream=config.name)
        try:
            await self.js.update_stream(config)
        except APIError as exc:
            if exc.err_code != NO_STORAGE or config.max_bytes == current.max_bytes:
                raise
            _unreserved(config, exc)
            config.max_bytes = current.max_bytes
            await self.js.update_stream(config)

    async def values_bucket(self) -> ObjectStore:
        """Open the values bucket (`nalar_common.values`), creating it if missing; it keeps
        values as long as the results and the journal that name them (the longer of
        `futures_max_age_s` and `runs_max_age_s`), set again on every start like the
        streams'."""
        bucket = self.names.values_bucket
        ttl = max(self.settings.futures_max_age_s, self.settings.runs_max_age_s)
        if min(self.settings.futures_max_age_s, self.settings.runs_max_age_s) <= 0:
            ttl = 0  # one of them is kept for ever: so are values
        try:
            store = await self.js.object_store(bucket)
        except BucketNotFoundError:
            try:
                return await self.js.create_object_store(bucket, config=ObjectStoreConfig(
                    ttl=ttl if ttl > 0 else None, storage=StorageType.FILE))
            except BadRequestError:
                return await self.js.object_store(bucket)  # a concurrent creator won
        info = await self.js.stream_info(f"OBJ_{bucket}")
        if round(info.config.max_age or 0) != round(max(ttl, 0)):
            info.config.max_age = max(ttl, 0)
            log.info("stream.updated", stream=info.config.name)
            await self.js.update_stream(info.config)
        return store

    async def kv(self, bucket: str, *, history: int = 1, ttl: float | None = None) -> KeyValue:
        """Open a bucket, creating it if missing (open first: see tech.md A.6 pitfall 1)."""
        try:
            return await self.js.key_value(bucket)
        except BucketNotFoundError:
            pass
        try:
            return await self.js.create_key_value(
                KeyValueConfig(bucket=bucket, history=history, ttl=ttl,
                               storage=StorageType.FILE))
        except BadRequestError:
            return await self.js.key_value(bucket)  # a concurrent creator won

    # -- reads ---------------------------------------------------------------
    async def direct_get_last(self, stream: str, subject: str, timeout: float = 2.0, *,
                              strict: bool = False) -> StoredMsg | None:
        """Last message on `subject`, or None; one request, no consumer. `strict`: None only
        when the stream says there is none (404); any other failure raises `Unavailable`."""
        msg = await self.nc.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"",
                                    timeout=timeout)
        status = (msg.headers or {}).get("Status")
        if strict and status and status != "404":
            raise Unavailable(f"direct get of {subject} from {stream} answered {status}",
                              details={"status": status})
        return _stored(msg)

    async def multi_last(self, stream: str, subjects: Iterable[str],
                         timeout: float = 5.0) -> dict[str, StoredMsg]:
        """Last message per subject (wildcards allowed): batch direct gets of at most
        `MULTI_LAST_BATCH` subjects; a wildcard matching more than a batch falls back to
        reading the stream with an ordered consumer."""
        subjects = list(subjects)
        found: dict[str, StoredMsg] = {}
        for i in range(0, len(subjects), MULTI_LAST_BATCH):
            chunk = subjects[i:i + MULTI_LAST_BATCH]
            try:
                found.update(await self._multi_last(stream, chunk, timeout))
            except TooManyResults:
                for subject in chunk:
                    async for m in self.iter_stream(stream, subject, follow=False):
                        found[m.subject] = m
        return found

    async def _multi_last(self, stream: str, subjects: list[str],
                          timeout: float) -> dict[str, StoredMsg]:
        if not subjects:
            return {}
        found, _ = await self._direct_batch(
            stream, {"multi_last": subjects, "batch": 100_000}, timeout)
        return {m.subject: m for m in found}

    async def _direct_batch(self, stream: str, request: dict[str, Any], timeout: float, *,
                            strict: bool = False) -> tuple[list[StoredMsg], int]:
        """One batch direct get: the messages, and how many more match (the end-of-batch
        message's `Nats-Num-Pending`; 0 when nothing matched). `strict`: a status other than
        the end of the batch (204) or nothing matched (404) raises `Unavailable` (no
        responders, a stream without a leader) instead of reading as "no more"."""
        inbox = self.nc.new_inbox()
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def collect(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await self.nc.subscribe(inbox, cb=collect)
        found: list[StoredMsg] = []
        try:
            await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}",
                                  json.dumps(request).encode(), reply=inbox)
            async with asyncio.timeout(timeout):
                while True:
                    msg = await queue.get()
                    stored = _stored(msg)
                    if stored is None:
                        headers = msg.headers or {}
                        status = headers.get("Status")
                        if status == "413":
                            raise TooManyResults(str(request))
                        if strict and status not in ("204", "404"):
                            raise Unavailable(f"batch direct get from {stream} answered "
                                              f"{status}", details={"status": status})
                        return found, int(headers.get("Nats-Num-Pending") or 0)
                    found.append(stored)
        finally:
            await sub.unsubscribe()

    async def read_all(self, stream: str, subject: str, timeout: float = 5.0) -> list[StoredMsg]:
        """Every message stored on `subject` (wildcards allowed), oldest first: batch direct
        gets of `MULTI_LAST_BATCH` messages, no consumer (a run's few events of one kind are
        read on every signal and every resumed driver: a consumer each cost a JetStream API
        round trip to create and one to delete)."""
        out: list[StoredMsg] = []
        seq = 1
        while True:
            found, more = await self._direct_batch(
                stream, {"seq": seq, "next_by_subj": subject, "batch": MULTI_LAST_BATCH,
                         "max_bytes": READ_ALL_PAGE_BYTES}, timeout, strict=True)
            out += found
            if not found or not more:
                return out
            seq = found[-1].seq + 1

    async def iter_stream(self, stream: str, subject: str, *, follow: bool,
                          timeout: float = 5.0, after_seq: int = 0,
                          idle: float | None = None) -> Any:
        """Yield stored messages on `subject` after stream sequence `after_seq` (all of them
        by default); with `follow`, keep going, and with `idle` as well, yield None whenever
        nothing came for `idle` seconds (a caller's cue to keep its own client alive).

        One ordered ephemeral push consumer per call: one message at a time, no acks, in
        memory, one replica, and gone `timeout` s after its subscriber at the latest. It is
        unsubscribed and deleted however the iteration ends, a cancelled one included, and
        with it the client's heartbeat and flow-control tasks."""
        info = await self.js.stream_info(stream, subjects_filter=subject)
        if not follow and (not info.state.subjects or after_seq >= info.state.last_seq):
            return
        config = None
        if after_seq > 0:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=after_seq + 1)
        sub = await self.js.subscribe(subject, stream=stream, ordered_consumer=True,
                                      inactive_threshold=timeout, config=config)

        async def close() -> None:
            try:
                await sub.unsubscribe()  # stops the client's tasks, drops the inbox
            except Exception:
                pass  # closed already, or the connection is
            if self.nc.is_connected:  # else the server drops it after `inactive_threshold`
                try:
                    await self.js.delete_consumer(stream, sub._consumer)
                except Exception:
                    pass

        try:
            if not follow and after_seq > 0:
                seen = await sub.consumer_info()
                if not seen.num_pending and not (seen.delivered and
                                                 seen.delivered.consumer_seq):
                    return  # messages after `after_seq`, none of them on `subject`
            while True:
                try:
                    msg = await sub.next_msg(timeout=idle if follow else timeout)
                except TimeoutError:
                    if follow:
                        yield None
                        continue
                    return
                meta = msg.metadata
                yield StoredMsg(subject=msg.subject, data=msg.data, headers=dict(msg.headers or {}),
                                seq=meta.sequence.stream, timestamp=str(meta.timestamp))
                if not follow and meta.num_pending == 0:
                    return
        finally:
            # shielded: a cancelled reader (its HTTP client went away) still cleans up
            await asyncio.shield(close())


def _unreserved(config: StreamConfig, exc: Exception) -> None:
    log.warning("stream.limit_not_reserved", stream=config.name, max_bytes=config.max_bytes,
                error=str(exc), advice="give the NATS server more JetStream storage, or set "
                "a smaller NALAR_NATS_*_MAX_BYTES (-1: none)")


def _limit(max_bytes: int) -> int:
    """A byte limit from the settings; -1 (or 0) is none."""
    return max_bytes if max_bytes > 0 else -1


def _stored(msg: Msg) -> StoredMsg | None:
    headers = dict(msg.headers or {})
    if headers.get("Status") or "Nats-Subject" not in headers:
        return None  # 404 not found, 204 end of batch, 408 and friends
    return StoredMsg(subject=headers["Nats-Subject"], data=msg.data, headers=headers,
                     seq=int(headers.get("Nats-Sequence", "0")),
                     timestamp=headers.get("Nats-Time-Stamp"))


async def connect(settings: NatsSettings, names: Names, *, name: str) -> Bus:
    """Connect with endless reconnects; callers close with `Bus.close()` (drain)."""
    holder: list[Bus] = []

    async def reconnected() -> None:
        if holder:
            await holder[0]._reconnected()

    async def error_cb(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    kwargs: dict[str, Any] = {}
    if settings.user:
        kwargs.update(user=settings.user, password=settings.password)
    nc = await nats.connect(
        servers=[settings.url], name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
        reconnected_cb=reconnected, error_cb=error_cb, connect_timeout=5, **kwargs)
    bus = Bus(nc, names, settings)
    holder.append(bus)
    return bus


__all__ = ["Bus", "NotFoundError", "StoredMsg", "connect"]
