"""How a held call ends or goes round again: done (acked, its slot refilled), failed (its
future resolved with the error), retried after a backoff, run again after a lost instance,
dead-lettered when it keeps failing to finish, answered from a replayed run's journal."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from nalar_common.bus import Bus
from nalar_common.calls import publish_result
from nalar_common.dlq import dead_letter
from nalar_common.errors import MalformedMessage, NalarError
from nalar_common.journal import Event, record
from nalar_common.logging import get_logger
from nalar_common.subjects import ROOT_FUTURE
from nalar_common.subjects import Headers as H
from nalar_common.wire import Done

from nalar_local_controller.book import Book, Tasks
from nalar_local_controller.dispatch import Dispatcher
from nalar_local_controller.held import Held, header_int
from nalar_local_controller.settings import LocalControllerSettings

if TYPE_CHECKING:
    from nalar_local_controller.replay import Answer

log = get_logger(__name__)


class Outcomes:
    def __init__(self, bus: Bus, node: str, book: Book, tasks: Tasks, dispatcher: Dispatcher,
                 settings: LocalControllerSettings) -> None:
        self.bus, self.node, self.book, self.tasks = bus, node, book, tasks
        self.dispatcher, self.settings = dispatcher, settings
        self.executor = f"lc:{node}"

    # -- the host's word ---------------------------------------------------------------------
    def dispatch_of(self, done: Done) -> Held | None:
        """The held call a host's `done` is about; None when it is unknown or a superseded
        dispatch finishing late (the current one still runs)."""
        held = self.book.held.get(f"{done.run}.{done.future}")
        if held is None or not held.dispatched or done.dispatch != held.token:
            return None
        return held

    async def done(self, held: Held, done: Done) -> None:
        """The host reports the dispatch over (`ok`, `error`, `waiting`): ack, refill."""
        self.book.end(held)
        queue = self.book.off_instance(held)
        self.book.stats["completed"] += 1
        if queue is not None:
            queue.finished(held, time.time() - held.dispatched_at, done.tokens,
                           done.context_tokens)
            self.dispatcher.refill(queue)
            await self.dispatcher.flush()
        await held.ack()

    # -- failing -----------------------------------------------------------------------------
    async def fail(self, held: Held, error: NalarError) -> None:
        if self.book.end(held):
            await self.failed(held, error)

    async def failed(self, held: Held, error: NalarError) -> None:
        """A call this controller stopped holding ends with `error` (stored, then acked)."""
        await self.fail_headers(held.headers, error)
        await held.ack()

    async def fail_headers(self, headers: dict[str, str], error: NalarError) -> None:
        """Resolve the call's future with `error` (and its run's, for a driver); like every
        error of a call, it names the call's place (future, agent, method)."""
        self.book.stats["failed"] += 1
        run, fut = headers.get(H.RUN, ""), headers.get(H.FUTURE, "")
        error = copy.copy(error)  # one error may end many calls (a cancelled run's)
        error.details = {"future": fut, "agent": headers.get(H.AGENT, ""),
                         "method": headers.get(H.METHOD, ""), **error.details}
        log.info("call.failed", run_id=run, future_id=fut, code=error.error_code,
                 message=error.message)
        await publish_result(self.bus, headers, error=error, executor=self.executor)
        await record(self.bus, run, Event.FUTURE_RESOLVED, {
            "future": fut, "agent": headers.get(H.AGENT), "method": headers.get(H.METHOD),
            "status": "error", "executor": self.executor, "code": error.error_code})
        if fut == ROOT_FUTURE:
            await record(self.bus, run, Event.FINISHED,
                         {"status": "failed", "error": error.to_wire()}, acked=True,
                         msg_id=f"{run}.finished")

    async def reject_malformed(self, msg: Any, headers: dict[str, str], why: str) -> None:
        """A call nobody can run: dead-lettered, its future (if it names one) fails at once,
        and the message is never delivered again."""
        self.book.stats["malformed"] += 1
        await dead_letter(self.bus, service=self.executor, subject=msg.subject,
                          data=msg.data, headers=headers, reason=f"malformed call: {why}",
                          stream=True)
        if headers.get(H.RUN) and headers.get(H.FUTURE):
            await self.fail_headers(headers, MalformedMessage(why))
        await msg.term()

    # -- going round again -------------------------------------------------------------------
    @staticmethod
    def next_attempt(held: Held) -> None:
        held.undispatch()
        held.headers = {**held.headers,
                        H.ATTEMPT: str(header_int(held.headers.get(H.ATTEMPT), 1) + 1)}

    def retry_later(self, held: Held, delay: float) -> None:
        """Free the slot now; place the call again after `delay` as its next attempt (still
        held and claimed: the message is acked only when an attempt ends it)."""
        queue = self.book.off_instance(held)
        self.next_attempt(held)
        self.book.stats["retried"] += 1
        self.dispatcher.place_later(held, delay)
        if queue is not None:
            self.dispatcher.refill(queue)
            self.dispatcher.flush_soon()

    def run_again(self, held: Held) -> None:
        """A dispatched call that did not finish (its instance was lost, or its dispatch) may
        have run part-way: it runs again as the next attempt after a backoff — unless it has
        been delivered `max_deliver` times (a call that kills its hosts): then it is
        dead-lettered."""
        self.next_attempt(held)
        held.deliveries += 1
        if held.deliveries > self.settings.max_deliver:
            self.tasks.spawn(self.dead_letter_held(held))
        else:
            self.dispatcher.place_later(held, self.backoff(held.deliveries))

    def backoff(self, deliveries: int) -> float:
        base = self.settings.redelivery_backoff_s * 2.0 ** max(0, deliveries - 2)
        return float(min(self.settings.redelivery_backoff_max_s, base))

    # -- dead letters ------------------------------------------------------------------------
    async def dead_letter_msg(self, msg: Any, headers: dict[str, str], deliveries: int,
                              reason: str) -> None:
        """A call that keeps failing to finish (its hosts die, its controllers die) goes to
        the dead-letter stream; its future stays open for `nalar dlq retry` (or fails with
        `nalar dlq discard`), and the run's journal says where it is."""
        self.book.stats["dead_lettered"] += 1
        dlq_id = await dead_letter(self.bus, service=self.executor, subject=msg.subject,
                                   data=msg.data, headers=headers, reason=reason,
                                   deliveries=deliveries, stream=True)
        if dlq_id is None:
            await msg.nak(delay=5)  # not stored: keep it, try again later
            return
        await record(self.bus, headers.get(H.RUN, ""), Event.DEAD_LETTERED, {
            "future": headers.get(H.FUTURE), "agent": headers.get(H.AGENT),
            "method": headers.get(H.METHOD), "reason": reason, "dlq_id": dlq_id,
            "deliveries": deliveries, "node": self.node})
        await msg.term()

    async def dead_letter_held(self, held: Held) -> None:
        if not self.book.end(held):
            return
        first, rest = held.msgs[0], held.msgs[1:]
        await self.dead_letter_msg(first, held.headers, held.deliveries,
                                   f"its instance was lost {held.deliveries - 1} times while "
                                   "running it (max_deliver)")
        for m in rest:
            await m.ack()

    # -- replays -----------------------------------------------------------------------------
    async def answer_from_replay(self, held: Held, answer: Answer) -> None:
        if not self.book.end(held):
            return
        executor = f"replay:{answer.source}"
        await publish_result(self.bus, held.headers, value=answer.value, error=answer.error,
                             executor=executor)
        # with its digest (and tool mark): a replay of this replay can answer it again
        await record(self.bus, held.run, Event.FUTURE_RESOLVED, {
            "future": held.future, "agent": held.agent, "method": held.method,
            "status": "ok" if answer.error is None else "error", "executor": executor,
            "replayed": answer.source, "replay_of": held.replay_of, "node": self.node,
            "args_digest": answer.digest, **({"kind": "tool"} if answer.tool else {})})
        await held.ack()
