"""Sessions of stateful agents pinned to an instance (KV bucket, compare-and-set): a session
moves only when its instance is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nalar_common.cluster import ClusterView
from nalar_common.subjects import Names
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from nalar_local_controller.held import Held
from nalar_local_controller.queues import InstanceQueue


class Pins:
    def __init__(self, names: Names, view: ClusterView) -> None:
        self.names, self.view = names, view
        self.kv: Any = None  # the pins bucket, opened when the controller starts

    def is_stateful(self, agent: str) -> bool:
        return any(i.stateful for i in self.view.live_instances(agent))

    def node_of(self, instance: str) -> str | None:
        """The node of a live instance that takes calls; None when it is gone or draining."""
        info = next((i for i in self.view.live() if i.instance == instance), None)
        return info.node if info is not None and not info.draining else None

    async def pin(self, held: Held,
                  choose: Callable[[Held], InstanceQueue | None]) -> str | None:
        """The instance that serves this session of a stateful agent: the one already pinned
        while it lives, else `choose`'s pick here, recorded with compare-and-set (a concurrent
        controller's pin wins)."""
        key = self.names.pin_key(held.agent, held.session)
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            entry = None
        current = entry.value.decode() if entry is not None and entry.value else None
        if current and self.node_of(current) is not None:
            return str(current)
        queue = choose(held)
        if queue is None:
            return None
        try:
            if entry is None:
                await self.kv.create(key, queue.info.instance.encode())
            else:
                await self.kv.update(key, queue.info.instance.encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            won = await self.kv.get(key)
            return won.value.decode() if won.value else None
        return str(queue.info.instance)
