"""What a local controller tells the global controller several times a second: per instance
its queue, work, latencies and sessions (for the policies), and its own counters."""

from __future__ import annotations

import time

from nalar_common.wire import InstanceLoad, Telemetry

from nalar_local_controller.book import Book

RECENT_REPORTED = 64  # sessions per instance in telemetry, for the affinity policy


def telemetry(node: str, book: Book, spawn_capacity: int) -> Telemetry:
    now = time.time()
    instances = {}
    for iid, q in book.queues.items():
        p50, p99 = q.percentiles()
        oldest = q.oldest()
        instances[iid] = InstanceLoad(
            agent=q.info.agent, host=q.info.host, queue=q.queued,
            queued_tokens=q.queued_tokens(), queued_work_s=round(q.work_s(now), 4),
            inflight=len(q.inflight), concurrency=q.info.concurrency,
            service_s=round(q.service_s, 4), p50_s=p50, p99_s=p99, sessions=q.sessions(),
            oldest_age_s=now - oldest.arrived if oldest else 0.0,
            oldest_session=oldest.session if oldest else None,
            queued_sessions=q.queued_sessions(), waiting=q.waiting(now),
            recent_sessions=[[k, round(v, 3)] for k, v in
                             list(q.recent.items())[-RECENT_REPORTED:]],
            engine=dict(q.info.engine or {}))
    return Telemetry(node=node, ts=now, instances=instances, held=len(book.held),
                     unplaced=sum(len(v) for v in book.unplaced.values()),
                     waiting_deps=sum(1 for h in book.held.values() if h.waiting),
                     spawn_capacity=spawn_capacity, stats=dict(book.stats))
