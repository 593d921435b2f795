"""A new policy snapshot acts at once on what waits here: session priorities reorder the
queues; a migration or a changed session route moves the session's queued calls (same node:
between queues; other node: republished), with its state lease when the migration says so —
never the calls of a stateful agent, never a call already running."""

from __future__ import annotations

from nalar_common.bus import Bus
from nalar_common.cluster import PolicySnapshot
from nalar_common.journal import Event, record
from nalar_common.logging import get_logger
from nalar_common.state import SessionStore

from nalar_local_controller import placement
from nalar_local_controller.book import Book, OneShot
from nalar_local_controller.dispatch import Dispatcher
from nalar_local_controller.held import Held
from nalar_local_controller.pins import Pins
from nalar_local_controller.settings import LocalControllerSettings

log = get_logger(__name__)


class Migration:
    def __init__(self, bus: Bus, node: str, book: Book, dispatcher: Dispatcher, pins: Pins,
                 store: SessionStore | None, once: OneShot,
                 settings: LocalControllerSettings) -> None:
        self.bus, self.node, self.book, self.dispatcher = bus, node, book, dispatcher
        self.pins, self.store, self.once, self.settings = pins, store, once, settings
        self._routes: dict[tuple[str, str], str] = {}  # route_session entries applied

    async def apply(self, snap: PolicySnapshot) -> None:
        for queue in self.book.queues.values():
            if queue.reprioritize(lambda h: placement.priority(h, snap)):
                self.dispatcher.dispatch(queue)
        for action in snap.migrations:
            if self.once.first_time(action) and action.get("src") in self.book.queues:
                await self.migrate(action["session"], action["agent"], action["dst"],
                                   src=action["src"], move_lease=True)
        routes = {(s_, a): i for s_, per in snap.sessions.items() for a, i in per.items()}
        for (session, agent), target in routes.items():
            if self._routes.get((session, agent)) != target:
                await self.migrate(session, agent, target)
        self._routes = routes

    async def migrate(self, session: str, agent: str, target: str, *, src: str | None = None,
                      move_lease: bool = False) -> None:
        """Move the session's queued calls of `agent` (from `src`, or from every other queue
        here) to instance `target`; with `move_lease`, its state lease goes along."""
        dest = self.book.queues.get(target)
        node = None if dest is not None else self.pins.node_of(target)
        if dest is None and node is None:
            return  # the target is gone: nothing to do
        moved: list[Held] = []
        for queue in self.book.queues.values():
            if queue is dest or queue.info.agent != agent or queue.info.stateful or \
                    (src is not None and queue.info.instance != src):
                continue
            moved += queue.take(lambda h: h.session != session)
        if moved and move_lease:
            await self.transfer_lease(session, agent, target)
        for held in moved:
            held.pinned = target
            self.book.stats["migrated"] += 1
            if dest is not None:
                dest.push(held)
            else:
                assert node is not None
                await self.dispatcher.forward(held, node, instance=target)
            await record(self.bus, held.run, Event.MIGRATED, {
                "future": held.future, "session": session, "agent": agent, "to": target,
                "from": src, "node": node or self.node,
                "policy_rev": self.dispatcher.policy_rev})
        if dest is not None and moved:
            self.dispatcher.dispatch(dest)
        if moved:
            log.info("session.migrated", session_id=session, agent=agent, to=target,
                     calls=len(moved))

    async def transfer_lease(self, session: str, agent: str, target: str) -> None:
        """Hand the session's state lease to `target` (new epoch: a late write of the old
        owner is rejected) — unless a call of the session runs here now: it keeps the lease
        and releases it when it ends, and the moved calls take it after."""
        if self.store is None or \
                not any(i.uses_state for i in self.pins.view.live_instances(agent)):
            return  # no store, or an agent without managed state: no lease to move
        if any(h.session == session for q in self.book.queues.values()
               if q.info.agent == agent for h in q.inflight.values()):
            return
        try:
            epoch = await self.store.transfer(session, agent, target,
                                              self.settings.lease_transfer_ttl_ms)
            self.book.stats["lease_transfers"] += 1
            log.info("session.lease_moved", session_id=session, agent=agent, to=target,
                     epoch=epoch)
        except Exception as exc:  # the calls still move; the lease follows when they run
            log.warning("session.lease_move_failed", session_id=session, error=str(exc))
