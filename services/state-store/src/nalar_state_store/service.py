"""StateStore: records every run in its session's registry (from the run journal's `created`
events, with a durable consumer so none is missed across restarts), answers session queries on
`nalar.state.session` (request/reply), and keeps the signal timeouts (`timers.py`), the run
deadlines (`deadlines.py`), the starts of runs whose gateway died (`starts.py`) and the
collection of old sessions (`sessions.py`)."""

from __future__ import annotations

import asyncio
import json

from nalar_common.bus import Bus
from nalar_common.cluster import ClusterView
from nalar_common.dlq import dead_letter
from nalar_common.logging import get_logger
from nalar_common.process import Shutdown
from nalar_common.state import SessionStore
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nalar_state_store.deadlines import RunDeadlines
from nalar_state_store.registry import RunRegistry
from nalar_state_store.sessions import SessionCollector
from nalar_state_store.settings import StateStoreSettings
from nalar_state_store.starts import RunStarts
from nalar_state_store.timers import SignalTimers

log = get_logger(__name__)


class StateStore:
    def __init__(self, bus: Bus, store: SessionStore, settings: StateStoreSettings) -> None:
        self.bus, self.store, self.settings = bus, store, settings
        self.names = bus.names
        self._stopping = asyncio.Event()
        self.view = ClusterView(bus)
        self.timers = SignalTimers(bus, self.view)
        self.deadlines = RunDeadlines(bus, store)
        self.starts = RunStarts(bus, store, self.view, grace_s=settings.start_grace_s)
        ttl = bus.settings.runs_max_age_s if settings.session_ttl_s is None \
            else settings.session_ttl_s
        self.session_ttl_s = ttl if ttl > 0 else None
        self.sessions = SessionCollector(store, self.session_ttl_s,
                                         settings.session_gc_interval_s)
        self.registry = RunRegistry(bus, store, self.deadlines, self.starts,
                                    self.session_ttl_s)

    @property
    def registered(self) -> int:
        return self.registry.registered

    async def run(self) -> None:
        await self.bus.ensure_topology()
        await self.store.r.ping()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.view.run())
                tg.create_task(self.timers.run())
                tg.create_task(self.deadlines.run())
                tg.create_task(self.starts.run())
                tg.create_task(self.sessions.run())
                tg.create_task(self.registry.run())
                started_sub = await self.starts.subscribe()
                timers_sub = await self.timers.subscribe()
                given_sub = await self.timers.watch_given()
                consumer = ConsumerConfig(
                    durable_name=self.names.STATE_STORE_CONSUMER, ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL, ack_wait=self.settings.ack_wait_s,
                    filter_subject=self.names.run_created_all())
                reg = await self.bus.js.subscribe(
                    self.names.run_created_all(), stream=self.names.runs_stream,
                    durable=consumer.durable_name, cb=self.registry.on_created,
                    manual_ack=True, config=consumer)
                req = await self.bus.nc.subscribe(self.names.state_request("session"),
                                                  queue="state-store", cb=self._on_session)
                log.info("state_store.started")
                await self._stopping.wait()
                await req.unsubscribe()
                await reg.unsubscribe()
                await given_sub.unsubscribe()
                await timers_sub.unsubscribe()
                await started_sub.unsubscribe()
                raise Shutdown
        except* Shutdown:
            pass
        finally:
            await self.bus.close()  # drain NATS (acks in flight go out), then Redis
            await self.store.close()

    def stop(self) -> None:
        self._stopping.set()

    async def _on_session(self, msg: Msg) -> None:
        try:
            session_id = json.loads(msg.data or b"{}").get("session_id", "")
            info = await self.store.session(session_id) if session_id else None
            reply = {"session": info} if info else {"error": {"code": "not_found",
                                                           "message": "unknown session"}}
        except Exception as exc:
            reply = {"error": {"code": "invalid_input", "message": str(exc)}}
            await dead_letter(self.bus, service="state-store", subject=msg.subject,
                              data=msg.data, headers=msg.headers,
                              reason=f"unreadable session request: {exc}")
        if msg.reply:
            await msg.respond(json.dumps(reply).encode())
