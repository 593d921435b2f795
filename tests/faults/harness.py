"""Machinery of the fault-injection suite: its own servers (restartable on the same port and
data), a supervisor that restarts what dies, a steady load of runs through two gateways, and
the report.

Every process is started from the main thread: children get SIGTERM when the thread that
started them ends (`die_with_parent` uses the parent-death signal, which is per thread).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from e2e_stack import Services, start_services
from nalar_common.servers import (
    ServerProcess,
    _wait_port,
    die_with_parent,
    free_port,
    start_nats,
    valkey_server_binary,
)
from nalar_common.testing import WaitTimeout, wait_until_sync

APP = Path(__file__).resolve().parent / "app"
WORKFLOW = "pipeline"
STEPS = 4
EXPECTED = sum(i * i for i in range(STEPS))
TERMINAL = ("succeeded", "failed", "cancelled")


def now() -> float:
    return time.time()


# -- servers ---------------------------------------------------------------------------------
class Servers:
    """nats-server (-js, file store) and valkey-server (AOF, fsync on every write) on fixed
    ports and data dirs, so a killed one comes back with its data where clients expect it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nats_port, self.nats_monitor = free_port(), free_port()
        self.redis_port = free_port()
        self.nats_dir, self.redis_dir = root / "nats", root / "valkey"
        self.redis_dir.mkdir(parents=True, exist_ok=True)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_nats(self) -> subprocess.Popen[bytes]:
        server: ServerProcess = start_nats(self.nats_dir, port=self.nats_port,
                                           monitor_port=self.nats_monitor,
                                           log_file=self.root / "nats.log")
        return server.proc

    def start_valkey(self) -> subprocess.Popen[bytes]:
        # `start_valkey` has no fsync option. `--appendfsync always` (NALAR_FAULTS_APPENDFSYNC
        # to change it): a write acknowledged to a client (idempotency keys, ledger records,
        # the tool's counters) is on disk before the reply, whatever happens next
        fsync = os.environ.get("NALAR_FAULTS_APPENDFSYNC", "always")
        out = open(self.root / "valkey.log", "ab")
        proc = subprocess.Popen(
            [valkey_server_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--dir", str(self.redis_dir), "--appendonly", "yes", "--appendfsync", fsync,
             "--save", "", "--protected-mode", "yes", "--daemonize", "no"],
            stdout=out, stderr=out, preexec_fn=die_with_parent, start_new_session=True)
        out.close()
        _wait_port(self.redis_port, proc, "valkey-server", 15)
        return proc


# -- supervisor ------------------------------------------------------------------------------
@dataclass
class Unit:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    died_at: float | None = None
    next_delay: float | None = None  # this once, instead of the supervisor's delay


class Supervisor:
    """Restarts a unit whose process exited, `delay` seconds later (like systemd's
    `Restart=always`, `RestartSec`). It acts when `tick()` runs: `wait_for()` ticks."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self.units: dict[str, Unit] = {}
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, name: str, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        unit = self.units[name] = Unit(name, start)
        unit.proc = start()

    def kill(self, name: str, restart_after: float | None = None) -> float:
        """SIGKILL a unit; the next `tick` after `restart_after` s (default: the supervisor's
        delay) starts it again."""
        unit = self.units[name]
        assert unit.proc is not None and unit.proc.poll() is None, f"{name} is not running"
        unit.next_delay = restart_after
        at = now()
        unit.proc.send_signal(signal.SIGKILL)
        unit.proc.wait(10)
        self.log.append({"t": at, "unit": name, "event": "SIGKILL"})
        return at

    def tick(self) -> None:
        t = now()
        for unit in self.units.values():
            if unit.proc is not None and unit.proc.poll() is not None:
                if unit.died_at is None:
                    unit.died_at = t
                    self.log.append({"t": t, "unit": unit.name, "event": "exited",
                                     "rc": unit.proc.returncode})
                delay = self.delay if unit.next_delay is None else unit.next_delay
                if t - unit.died_at >= delay:
                    unit.restarts += 1
                    unit.next_delay = None
                    unit.proc = unit.start()
                    unit.died_at = None
                    self.log.append({"t": now(), "unit": unit.name, "event": "restarted"})

    def wait_for(self, ready: Callable[[], object], timeout: float,
                 stable: float = 0.0) -> float | None:
        """Tick until `ready()` has been true for `stable` seconds in a row (exceptions count
        as not ready); returns the time that streak began, None on timeout."""
        since: float | None = None

        def streak() -> float | None:
            nonlocal since
            self.tick()
            try:
                ok = bool(ready())
            except Exception:
                ok = False
            if not ok:
                since = None
                return None
            since = since or now()
            return since if now() - since >= stable else None

        try:
            return wait_until_sync(streak, what="the stack's state",  # type: ignore[no-any-return]
                                   timeout=timeout, interval=0.1)
        except WaitTimeout:
            return None

    def restarted(self, name: str, after: float) -> bool:
        """Whether the supervisor started `name` again after time `after`."""
        return any(e["unit"] == name and e["event"] == "restarted" and e["t"] >= after
                   for e in self.log)

    def stop(self) -> None:
        """SIGTERM every service, then the servers last."""
        self.units, ordered = {}, sorted(self.units.values(),
                                         key=lambda u: u.name in ("nats", "valkey"))
        for unit in ordered:
            if unit.proc is not None and unit.proc.poll() is None:
                unit.proc.send_signal(signal.SIGTERM)
                try:
                    unit.proc.wait(15)
                except subprocess.TimeoutExpired:
                    unit.proc.kill()
                    unit.proc.wait()


class Stack:
    """The whole system under test, every process a supervised unit."""

    def __init__(self, root: Path, *, nodes: int = 2, hosts_per_node: int = 2,
                 restart_delay: float = 1.0, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.log_dir = root / "logs"
        self.servers = Servers(root)
        self.sup = Supervisor(restart_delay)
        self.prefix = "f" + uuid.uuid4().hex[:8]
        self.extra_env = extra_env or {}
        self.gateways = {"gw1": free_port(), "gw2": free_port()}
        self.hosts = [f"{n}{h}" for n in [f"n{i + 1}" for i in range(nodes)]
                      for h in "abcdefgh"[:hosts_per_node]]
        self.specs: dict[str, tuple[str, dict[str, str]]] = {
            "gc-a": ("nalar_global_controller", {"NALAR_GC_CONTROLLER_ID": "gc-a"}),
            "gc-b": ("nalar_global_controller", {"NALAR_GC_CONTROLLER_ID": "gc-b"}),
            "state-store": ("nalar_state_store", {}),
        }
        for i in range(nodes):
            node = f"n{i + 1}"
            self.specs[f"lc-{node}"] = ("nalar_local_controller", {"NALAR_NODE_NAME": node})
        for host in self.hosts:
            self.specs[f"host-{host}"] = ("nalar_agent_host", {
                "NALAR_NODE_NAME": host[:2], "NALAR_AGENT_HOST_HOST_ID": host})
        for gw, port in self.gateways.items():
            self.specs[gw] = ("nalar_gateway", {"NALAR_GATEWAY_PORT": str(port)})
        self._handles: list[Services] = []
        self._incarnation: dict[str, int] = {}

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.gateways.values()]

    def _service_starter(self, name: str) -> Callable[[], subprocess.Popen[bytes]]:
        module, env = self.specs[name]

        def start() -> subprocess.Popen[bytes]:
            k = self._incarnation[name] = self._incarnation.get(name, 0) + 1
            log_name = name if k == 1 else f"{name}.{k}"  # each incarnation its own log
            handle = start_services(APP, self.servers.nats_url, self.servers.redis_url,
                                    self.log_dir, [(log_name, module, env)],
                                    prefix=self.prefix, extra_env=self.extra_env)
            self._handles.append(handle)
            return handle.procs[log_name]

        return start

    def start(self) -> None:
        self.sup.add("nats", self.servers.start_nats)
        self.sup.add("valkey", self.servers.start_valkey)
        for name in self.specs:
            self.sup.add(name, self._service_starter(name))

    def ready(self) -> bool:
        """Both gateways answer, see every host's driver, and a controller holds the lease."""
        for url in self.urls:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code != 200 or r.json()["driver_instances"] != len(self.hosts):
                return False
        return self.leader() is not None

    def leader(self) -> str | None:
        return asyncio.run(_leader(self.servers.nats_url, self.prefix))

    def stop(self) -> None:
        self.sup.stop()
        for h in self._handles:
            for f in h._logs:
                f.close()

    def logs(self, names: list[str] | None = None, tail: int = 4000) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            if names is None or path.stem.split(".")[0] in names:
                out.append(f"--- {path.name}:\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)


async def _leader(nats_url: str, prefix: str) -> str | None:
    import nats

    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        kv = await nc.jetstream().key_value(f"{prefix}_nalar_policy")
        entry = await kv.get("leader")
        return str(json.loads(entry.value)["id"]) if entry.value else None
    except Exception:
        return None
    finally:
        await nc.close()


async def _created_events(nats_url: str, prefix: str) -> list[dict[str, Any]]:
    """Every run the stack created (the journal's `created` events)."""
    from nalar_common.bus import connect
    from nalar_common.journal import decode
    from nalar_common.settings import NatsSettings
    from nalar_common.subjects import Names

    names = Names(prefix)
    bus = await connect(NatsSettings(url=nats_url, prefix=prefix), names, name="faults")
    try:
        msgs = await bus.read_all(names.runs_stream, names.run_created_all(), timeout=10)
        return [decode(m) for m in msgs]
    finally:
        await bus.close()


def created_events(stack: Stack) -> list[dict[str, Any]]:
    return asyncio.run(_created_events(stack.servers.nats_url, stack.prefix))


# -- load ------------------------------------------------------------------------------------
@dataclass
class Run:
    key: str
    submitted_at: float
    run_id: str | None = None
    accepted_at: float | None = None
    gateway: str | None = None
    post_errors: list[str] = field(default_factory=list)
    failover: bool = False  # accepted by another gateway than the one first tried
    status: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    finished_at: float | None = None
    seen_at: float | None = None  # when the poller saw it terminal
    not_found: int = 0  # GETs that answered 404
    repost: str | None = None  # the run id a second POST with the same key returned


class Load:
    """`clients` threads each submit a run every `interval` s (idempotency key per logical
    run; a POST that fails goes to the other gateway with the same key); one poller follows
    every accepted run to its end."""

    POST_GIVE_UP_S = 120.0

    def __init__(self, urls: list[str], *, clients: int = 3, interval: float = 1.0,
                 run_timeout_s: float = 120.0, repost_share: float = 0.2) -> None:
        self.urls, self.clients, self.interval = urls, clients, interval
        self.run_timeout_s, self.repost_share = run_timeout_s, repost_share
        self.runs: list[Run] = []
        self.given_up: list[Run] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.poll_stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started_at = now()

    def start(self) -> None:
        self.started_at = now()
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True,
                                 name=f"client-{i}")
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self._poller, daemon=True, name="poller")
        t.start()
        self.threads.append(t)

    def stop_submitting(self) -> None:
        self.stopping.set()
        for t in self.threads[:-1]:
            t.join(self.POST_GIVE_UP_S + 60)

    def stop(self) -> None:
        self.stopping.set()
        self.poll_stop.set()
        for t in self.threads:
            t.join(30)

    # -- submitting
    def _client(self, i: int) -> None:
        rng = random.Random(i)
        self.stopping.wait(rng.uniform(0, self.interval))  # clients out of step
        with httpx.Client(timeout=45) as http:
            k = 0
            while not self.stopping.is_set():
                t0 = time.monotonic()
                run = Run(key=f"faults-{uuid.uuid4().hex}", submitted_at=now())
                self._submit(http, run, first=(i + k) % len(self.urls))
                k += 1
                with self.lock:
                    (self.runs if run.run_id else self.given_up).append(run)
                if run.run_id and rng.random() < self.repost_share:
                    self._repost(http, run)
                pause = self.interval * rng.uniform(0.6, 1.4) - (time.monotonic() - t0)
                self.stopping.wait(max(0.0, pause))

    def _post(self, http: httpx.Client, url: str, key: str) -> httpx.Response:
        return http.post(f"{url}/v1/workflows/{WORKFLOW}/runs", json={
            "input": {"n": STEPS}, "idempotency_key": key, "timeout_s": self.run_timeout_s})

    def _submit(self, http: httpx.Client, run: Run, first: int) -> None:
        give_up = time.monotonic() + self.POST_GIVE_UP_S
        n = 0
        while time.monotonic() < give_up:
            url = self.urls[(first + n) % len(self.urls)]
            n += 1
            try:
                r = self._post(http, url, run.key)
            except httpx.HTTPError as exc:
                run.post_errors.append(f"{url[-5:]}: {type(exc).__name__}")
                time.sleep(0.2)
                continue
            if r.status_code in (200, 202):
                run.run_id, run.accepted_at, run.gateway = r.json()["run_id"], now(), url
                run.failover = n > 1
                return
            run.post_errors.append(f"{url[-5:]}: {r.status_code} {_code(r)}")
            if r.status_code < 500 and r.status_code != 429:
                return  # refused for good
            time.sleep(0.3)

    def _repost(self, http: httpx.Client, run: Run) -> None:
        """The same key again, on the other gateway: must name the same run."""
        other = [u for u in self.urls if u != run.gateway] or self.urls
        for _ in range(20):
            try:
                r = self._post(http, other[0], run.key)
                if r.status_code in (200, 202):
                    run.repost = r.json()["run_id"]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

    # -- following
    def _poller(self) -> None:
        with httpx.Client(timeout=10) as http:
            k = 0
            while not self.poll_stop.is_set():
                with self.lock:
                    open_runs = [r for r in self.runs if r.status not in TERMINAL]
                for run in open_runs:
                    if self.poll_stop.is_set():
                        return
                    k += 1
                    view = None
                    for j in range(len(self.urls)):
                        url = self.urls[(k + j) % len(self.urls)]
                        try:
                            r = http.get(f"{url}/v1/runs/{run.run_id}")
                        except httpx.HTTPError:
                            continue
                        if r.status_code == 404:
                            run.not_found += 1
                            break
                        if r.status_code == 200:
                            view = r.json()
                            break
                    if view is not None and view.get("status") in TERMINAL:
                        run.result, run.error = view.get("result"), view.get("error")
                        run.finished_at, run.seen_at = view.get("finished_at"), now()
                        run.status = view["status"]
                self.poll_stop.wait(0.3)

    def open_runs(self) -> list[Run]:
        with self.lock:
            return [r for r in self.runs if r.status not in TERMINAL]

    def succeeded_since(self, t: float) -> int:
        """Runs accepted at or after `t` that succeeded (as the poller has seen so far)."""
        with self.lock:
            return sum(1 for r in self.runs if r.accepted_at is not None
                       and r.accepted_at >= t and r.status == "succeeded")

    def snapshot(self) -> list[Run]:
        with self.lock:
            return list(self.runs)


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except Exception:
        return r.text[:80]


# -- checks on the side effects ---------------------------------------------------------------
@dataclass
class Effects:
    """What the tool's counters say about one step of one run."""

    run_id: str
    step: int
    effect: int  # faults:{run}:{step}
    execs: int  # faults:exec:{run}:{step}
    exec_log: list[str]
    ops: list[str]


def read_effects(redis_url: str, runs: list[Run]) -> list[Effects]:
    r = redis.Redis.from_url(redis_url, socket_timeout=10)
    out: list[Effects] = []
    try:
        for run in runs:
            pipe = r.pipeline(transaction=False)
            for step in range(STEPS):
                pipe.get(f"faults:{run.run_id}:{step}")
                pipe.get(f"faults:exec:{run.run_id}:{step}")
                pipe.lrange(f"faults:execlog:{run.run_id}:{step}", 0, -1)
                pipe.lrange(f"faults:ops:{run.run_id}:{step}", 0, -1)
            vals = pipe.execute()
            for step in range(STEPS):
                eff, ex, log, ops = vals[4 * step:4 * step + 4]
                out.append(Effects(str(run.run_id), step, int(eff or 0), int(ex or 0),
                                   [x.decode() for x in log], [x.decode() for x in ops]))
    finally:
        r.close()
    return out


def crash_window(e: Effects, faults: list[Fault]) -> bool:
    """A step applied twice because the host running one execution was SIGKILLed after the
    effect and before the ledger recorded it: the one window the ledger cannot close
    (docs/durability.md: pass `nalar.idempotency_key()` to the outside service). Told apart
    from a ledger failure by both applications carrying the same idempotency key and a kill
    of that execution's host between it and the next execution."""
    keys = {op.split("@")[0] for op in e.ops}
    if e.effect != 2 or len(e.ops) != 2 or len(keys) != 1:
        return False
    log = [entry.split("|") for entry in e.exec_log]
    return any(f.target == f"host-{host}" and float(t) <= f.at <= float(log[i + 1][0])
               for i, (t, _, host) in enumerate(log[:-1]) for f in faults)


# -- report ----------------------------------------------------------------------------------
@dataclass
class Fault:
    name: str
    what: str
    at: float
    target: str
    ready_after_s: float | None = None  # stack ready again (both gateways, all drivers)


def build_report(load: Load, faults: list[Fault], effects: list[Effects],
                 created: list[dict[str, Any]], sup_log: list[dict[str, Any]],
                 t0: float) -> dict[str, Any]:
    runs = load.snapshot()
    by_run: dict[str, list[Effects]] = {}
    for e in effects:
        by_run.setdefault(e.run_id, []).append(e)
    marks = [("baseline", "steady load, no fault", t0, "")] + \
        [(f.name, f.what, f.at, f.target) for f in faults]

    def window_of(t: float) -> int:
        """Index of the last mark at or before `t`."""
        idx = 0
        for i, (_, _, at, _) in enumerate(marks):
            if t >= at:
                idx = i
        return idx

    rows: list[dict[str, Any]] = []
    for i, (name, what, at, target) in enumerate(marks):
        end = marks[i + 1][2] if i + 1 < len(marks) else float("inf")
        accepted = [r for r in runs if r.accepted_at is not None and at <= r.accepted_at < end]
        inflight = [r for r in runs if i > 0 and r.accepted_at is not None and r.accepted_at < at
                    and (r.finished_at is None or r.finished_at > at)]
        failed = [r for r in accepted if r.status != "succeeded" or r.result != EXPECTED]
        # duplicates and re-executions, attributed to the window in which the extra
        # execution happened (its time stamp in the exec log)
        dup_steps, reexec_steps = [], []
        for r in runs:
            for e in by_run.get(str(r.run_id), []):
                extra = [float(x.split("|")[0]) for x in e.exec_log[1:]] or \
                    [float(r.accepted_at or 0)]
                if e.effect > 1 and any(window_of(t) == i for t in extra):
                    dup_steps.append(f"{r.run_id}:{e.step}")
                if e.execs > 1 and any(window_of(t) == i for t in extra):
                    reexec_steps.append(f"{r.run_id}:{e.step}")
        drain = None
        if inflight and all(r.finished_at for r in inflight):
            drain = max(float(r.finished_at or 0) for r in inflight) - at
        later = [float(r.finished_at) for r in runs if r.accepted_at and r.accepted_at >= at
                 and r.finished_at and r.status == "succeeded"]
        resume = (min(later) - at) if later and i > 0 else None
        reasons: dict[str, int] = {}
        for r in failed:
            why = _why(r)
            reasons[why] = reasons.get(why, 0) + 1
        rows.append({
            "fault": name, "what": what, "target": target, "at_s": round(at - t0, 1),
            "inflight_at_fault": len(inflight),
            "inflight_failed": sum(1 for r in inflight if r.status != "succeeded"),
            "accepted": len(accepted),
            "succeeded": sum(1 for r in accepted if r.status == "succeeded"
                             and r.result == EXPECTED),
            "failed": len(failed), "failure_reasons": reasons,
            "post_failovers": sum(1 for r in accepted if r.failover),
            "post_errors": sum(len(r.post_errors) for r in accepted),
            "duplicates": len(dup_steps), "duplicate_steps": dup_steps,
            "reexecuted": len(reexec_steps), "reexecuted_steps": reexec_steps,
            "drain_s": round(drain, 2) if drain is not None else None,
            "resume_s": round(resume, 2) if resume is not None else None,
        })
        fault = next((f for f in faults if f.name == name), None)
        if fault is not None:
            rows[-1]["ready_after_s"] = fault.ready_after_s

    keys: dict[str, list[str]] = {}
    for ev in created:
        if ev.get("idempotency_key"):
            keys.setdefault(str(ev["idempotency_key"]), []).append(str(ev.get("run")))
    return {
        "rows": rows,
        "totals": {
            "accepted": len(runs),
            "succeeded": sum(1 for r in runs if r.status == "succeeded" and r.result == EXPECTED),
            "failed": [{"run": r.run_id, "why": _why(r), "error": r.error,
                        "accepted_at_s": round(float(r.accepted_at or 0) - t0, 1)}
                       for r in runs if r.status != "succeeded" or r.result != EXPECTED],
            "never_accepted": [asdict(r) for r in load.given_up],
            "not_found": [r.run_id for r in runs if r.not_found],
            "duplicates": [asdict(e) for e in effects
                           if e.effect > 1 and not crash_window(e, faults)],
            "crash_window": [asdict(e) for e in effects
                             if e.effect > 1 and crash_window(e, faults)],
            "missing_effects": [asdict(e) for e in effects if e.effect < 1
                                and next((r for r in runs if r.run_id == e.run_id and
                                          r.status == "succeeded"), None)],
            "reexecuted": [asdict(e) for e in effects if e.execs > 1],
            "runs_per_key": {k: v for k, v in keys.items() if len(v) > 1},
            "repost_mismatch": [{"key": r.key, "run": r.run_id, "repost": r.repost}
                                for r in runs if r.repost and r.repost != r.run_id],
            "reposts_checked": sum(1 for r in runs if r.repost),
            "created_runs": len(created),
        },
        "supervisor": [{**e, "t": round(e["t"] - t0, 2)} for e in sup_log],
        "runs": [{"run": r.run_id, "key": r.key, "gateway": r.gateway, "failover": r.failover,
                  "post_errors": r.post_errors, "status": r.status, "result": r.result,
                  "accepted_s": _rel(r.accepted_at, t0), "finished_s": _rel(r.finished_at, t0),
                  "error": r.error} for r in runs],
    }


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(float(t) - t0, 3)


def _why(r: Run) -> str:
    if r.status is None:
        return "never finished"
    if r.status == "succeeded":
        return f"wrong result {r.result!r}"
    err = r.error or {}
    return f"{r.status}: {err.get('code')}: {str(err.get('message'))[:200]}"


def table(report: dict[str, Any]) -> str:
    head = ("| fault | at (s) | in flight at fault (failed) | accepted | succeeded | failed "
            "| POST failovers | duplicates | re-executed steps | drain (s) | resume (s) "
            "| ready (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in report["rows"]:
        lines.append(
            f"| {row['fault']} | {row['at_s']} | "
            f"{row['inflight_at_fault']} ({row['inflight_failed']}) | {row['accepted']} | "
            f"{row['succeeded']} | {row['failed']} | {row['post_failovers']} | "
            f"{row['duplicates']} | {row['reexecuted']} | {_fmt(row['drain_s'])} | "
            f"{_fmt(row['resume_s'])} | {_fmt(row.get('ready_after_s'))} |")
    reasons = [f"- {row['fault']}: {why} (x{n})" for row in report["rows"]
               for why, n in row["failure_reasons"].items()]
    if reasons:
        lines += ["", "Failures:", *reasons]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2, default=str))


__all__ = ["APP", "EXPECTED", "STEPS", "Fault", "Load", "Stack", "build_report",
           "created_events", "read_effects", "table", "write_json"]

