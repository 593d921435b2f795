"""Fault injection: under a steady stream of runs, kill one part of the stack after another
(agent host, local controller, active global controller, state store, gateway, nats-server,
Redis) while a supervisor restarts what died; at the end every accepted run must have
succeeded with the right result, none may be lost, and no side effect may have happened twice.

`make test-faults` (or `pytest -s -m faults tests/faults`) prints the table; the numbers are
also written as JSON under the test's tmp dir (path printed). docs/reliability.md explains the
columns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faults.harness import (
    EXPECTED,
    Fault,
    Load,
    Stack,
    build_report,
    created_events,
    read_effects,
    table,
    write_json,
)

pytestmark = pytest.mark.faults

# short timeouts so that recovery takes seconds (docs/configuration.md)
ENV = {
    "NALAR_NATS_CALL_ACK_WAIT_S": "5",  # calls a dead local controller held come back after
    "NALAR_NATS_INSTANCE_TTL_S": "2",  # a dead host's instances expire after
    "NALAR_AGENT_HOST_HEARTBEAT_S": "0.5",
    "NALAR_GC_LEASE_TTL_S": "2",  # a standby controller takes over after
    "NALAR_STATE_ACK_WAIT_S": "5",
    "NALAR_LC_REDELIVERY_BACKOFF_S": "0.5",
    "NALAR_LC_RECONCILE_AFTER_S": "5",
    "NALAR_AGENT_HOST_GRACE_S": "5",
    "NALAR_LOG_LEVEL": "INFO",
}
RESTART_DELAY_S = 1.0  # the supervisor's RestartSec
# load between faults: this many runs accepted after the stack recovered have succeeded
STEADY_RUNS = int(os.environ.get("NALAR_FAULTS_STEADY_RUNS", "16"))
STEADY_CAP_S = 60.0  # longest wait for them (a stack that does not serve shows in the report)
SETTLE_CAP_S = 45.0  # longest wait for a fault's in-flight runs before the next fault
READY_STABLE_S = 4.0  # "ready again" must hold this long (a stale view shows only later)
FINAL_WAIT_S = 150.0  # for every accepted run to end, after the load stops
RECOVERY_BOUND_S = 45.0  # every run in flight at a fault must have finished within this
RUN_TIMEOUT_S = 90.0  # each run's deadline (timeout_s): a stuck run fails, saying where


def _faults(stack: Stack) -> list[tuple[str, str, Callable[[], str], float | None]]:
    """(name, description, target chooser, restart delay or None for the supervisor's) in
    the order they strike."""
    def active_gc() -> str:
        leader = stack.leader()
        assert leader in ("gc-a", "gc-b"), f"no active global controller: {leader!r}"
        return leader

    return [
        # the host comes back (same host id) after its instances expired from the table
        ("agent-host", "SIGKILL agent host n1a, restarted after 5 s", lambda: "host-n1a", 5.0),
        # ... or at once, before they expire: its controller never sees them go
        ("agent-host-quick", "SIGKILL agent host n2a, restarted at once", lambda: "host-n2a",
         0.0),
        ("local-controller", "SIGKILL node n2's local controller", lambda: "lc-n2", None),
        ("global-controller", "SIGKILL the active global controller", active_gc, None),
        ("state-store", "SIGKILL the state store", lambda: "state-store", None),
        ("gateway", "SIGKILL gateway gw1 (clients fail over to gw2)", lambda: "gw1", None),
        ("nats", "SIGKILL nats-server, start it again (same port and data)", lambda: "nats",
         None),
        ("redis", "SIGKILL valkey, start it again (same port, its AOF)", lambda: "valkey", None),
    ]


def test_faults(tmp_path: Path) -> None:
    stack = Stack(tmp_path, extra_env=ENV, restart_delay=RESTART_DELAY_S)
    load: Load | None = None
    try:
        stack.start()
        assert stack.sup.wait_for(stack.ready, 90) is not None, \
            f"stack not ready\n{stack.logs()}"
        load = Load(stack.urls, clients=4, interval=1.0, run_timeout_s=RUN_TIMEOUT_S)
        load.start()
        t0 = load.started_at
        stack.sup.wait_for(lambda: load.succeeded_since(t0) >= STEADY_RUNS * 1.5,
                           STEADY_CAP_S)  # baseline
        faults: list[Fault] = []
        for name, what, choose, restart_after in _faults(stack):
            # each fault strikes work in flight (the steady window ends when the poller sees
            # a run end: not in step with the clients)
            stack.sup.wait_for(load.open_runs, STEADY_CAP_S)
            target = choose()
            at = stack.sup.kill(target, restart_after)
            fault = Fault(name, what, at, target)
            faults.append(fault)
            print(f"[{at - t0:6.1f}s] fault {name}: {what} ({target})", flush=True)
            inflight = {r.run_id for r in load.open_runs() if r.accepted_at and r.accepted_at < at}
            restart_cap = (RESTART_DELAY_S if restart_after is None else restart_after) + 30
            assert stack.sup.wait_for(lambda t=target, a=at: stack.sup.restarted(t, a),  # type: ignore[misc]
                                      restart_cap), \
                f"{target} not restarted\n{stack.logs()}"
            ready_at = stack.sup.wait_for(stack.ready, SETTLE_CAP_S, stable=READY_STABLE_S)
            if ready_at is not None:
                fault.ready_after_s = round(ready_at - at, 2)
            stack.sup.wait_for(lambda ids=inflight: not any(
                r.run_id in ids for r in load.open_runs()), SETTLE_CAP_S)  # type: ignore[misc]
            settled = time.time()
            stack.sup.wait_for(lambda t=settled: load.succeeded_since(t) >= STEADY_RUNS,  # type: ignore[misc]
                               STEADY_CAP_S)
        load.stop_submitting()
        print(f"[{time.time() - t0:6.1f}s] load stopped; waiting for "
              f"{len(load.open_runs())} open runs", flush=True)
        stack.sup.wait_for(lambda: not load.open_runs(), FINAL_WAIT_S)  # type: ignore[union-attr]
        load.stop()
        runs = load.snapshot()
        effects = read_effects(stack.servers.redis_url, runs)
        created = created_events(stack)
        report = build_report(load, faults, effects, created, stack.sup.log, t0)
        report["config"] = {"env": ENV, "restart_delay_s": RESTART_DELAY_S,
                            "steady_runs": STEADY_RUNS, "hosts": stack.hosts,
                            "clients": load.clients,
                            "interval_s": load.interval, "run_timeout_s": RUN_TIMEOUT_S,
                            "logs": str(stack.log_dir),
                            "duration_s": round(time.time() - t0, 1)}
        path = tmp_path / "faults-report.json"
        write_json(path, report)
        print("\n" + table(report))
        print(f"\nreport: {path}\nlogs: {stack.log_dir}")

        totals = report["totals"]
        problems = []
        still_open = [r.run_id for r in runs if r.status is None]
        if still_open:
            problems.append(f"{len(still_open)} runs never finished: {still_open[:10]}")
        if totals["failed"]:
            problems.append(f"{len(totals['failed'])} runs did not succeed with {EXPECTED}: "
                            f"{totals['failed'][:10]}")
        if totals["never_accepted"]:
            problems.append(f"{len(totals['never_accepted'])} submissions never accepted: "
                            f"{[r['post_errors'][-3:] for r in totals['never_accepted'][:5]]}")
        if totals["not_found"]:
            problems.append(f"runs the gateway did not know (404): {totals['not_found'][:10]}")
        if totals["duplicates"]:
            problems.append(f"side effects applied more than once: {totals['duplicates'][:10]}")
        host_kills = sum(1 for f in faults if f.target.startswith("host-"))
        if len(totals["crash_window"]) > host_kills:  # at most one per host killed
            problems.append(f"more effects applied twice in the ledger's crash window than "
                            f"hosts killed: {totals['crash_window'][:10]}")
        if totals["missing_effects"]:
            problems.append(f"succeeded runs missing a side effect: "
                            f"{totals['missing_effects'][:10]}")
        if totals["runs_per_key"]:
            problems.append(f"idempotency keys that created several runs: "
                            f"{totals['runs_per_key']}")
        if totals["repost_mismatch"]:
            problems.append(f"a repeated POST named another run: {totals['repost_mismatch']}")
        slow = [f"{row['fault']}: {row['inflight_at_fault']} runs in flight, the last ended "
                f"{row['drain_s']} s after the fault" for row in report["rows"][1:]
                if row["inflight_at_fault"] and (row["drain_s"] is None
                                                 or row["drain_s"] > RECOVERY_BOUND_S)]
        if slow:
            problems.append(f"runs in flight at a fault took longer than {RECOVERY_BOUND_S} s "
                            f"to finish: {slow}")
        if totals["created_runs"] != len(runs):
            problems.append(f"{totals['created_runs']} runs created for {len(runs)} accepted")
        assert not problems, "\n".join(problems) + f"\nreport: {path}\nlogs: {stack.log_dir}"
    finally:
        if load is not None:
            load.stop()
        stack.stop()
