"""What the stack benchmarks share: the whole stack started with `python -m nalar up` (as a user
would), the pid of every service process, CPU meters over `/proc`, percentiles, and py-spy's
collapsed stacks summed per function (bench/overhead.py, bench/frontdoor.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio
from nalar_common.servers import (
    ServerProcess,
    die_with_parent,
    free_port,
    nats_server_binary,
    start_nats,
    start_valkey,
)
from nalar_common.testing import TEST_PRINCIPAL
from procstat import CLK_TCK, cpu_seconds

MACHINE = "(machine)"


# -- statistics ------------------------------------------------------------------------------
def pct(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `samples`, which must not be empty."""
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of samples in seconds."""
    return {"n": len(samples), **{k: round(pct(samples, q) * 1e3, 3) for k, q in
                                  (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99),
                                   ("max_ms", 100))}}


def run_header(script: str, argv: Sequence[str]) -> dict[str, Any]:
    """What every result file starts with: the command that made it and the machine."""
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True,
                             text=True).stdout.strip().split()[-1]
    return {"command": " ".join([".venv/bin/python", script, *argv]),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                        "nats_server": version}}


# -- processes -----------------------------------------------------------------------------
def descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def service_name(pid: int) -> str | None:
    """`lc-n1`, `host-n1-h2`, `gateway`... for a process started by `nalar up`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        env = dict(e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes()
                   .split(b"\0") if b"=" in e)
    except OSError:
        return None
    module = argv[argv.index(b"-m") + 1].decode() if b"-m" in argv else ""
    node = env.get(b"NALAR_NODE_NAME", b"").decode()
    return {"nalar_state_store": "state-store", "nalar_global_controller": "global-controller",
            "nalar_gateway": "gateway", "nalar_local_controller": f"lc-{node}",
            "nalar_agent_host": "host-" + env.get(b"NALAR_AGENT_HOST_HOST_ID", b"").decode(),
            }.get(module)


@dataclass
class Stack:
    """Servers and `nalar up`, as started by `started_stack`."""

    tmp: Path
    nats: ServerProcess
    valkey: ServerProcess
    prefix: str
    up: subprocess.Popen[bytes]
    up_log: Path
    url: str
    pids: dict[str, int] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)  # `nalar up ...`, for a restart
    env: dict[str, str] = field(default_factory=dict)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def wait_ready(stack: Stack, nodes: int, timeout: float = 120.0) -> None:
    """Until GET /readyz is 200 with drivers on every node (the gateway has no push for it),
    then note the pid of every service process for the CPU figures."""
    async with httpx.AsyncClient(timeout=2) as http:
        deadline = time.monotonic() + timeout
        while True:
            if stack.up.poll() is not None:
                raise RuntimeError(f"nalar up exited with {stack.up.returncode}:\n"
                                   f"{_tail(stack.up_log)}")
            with contextlib.suppress(httpx.HTTPError):
                r = await http.get(f"{stack.url}/readyz")
                if r.status_code == 200 and len(r.json()["nodes"]) == nodes:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"stack not ready after {timeout:.0f}s:\n"
                                   f"{_tail(stack.up_log)}")
            await asyncio.sleep(0.2)
    for pid in descendants(stack.up.pid):
        if (name := service_name(pid)) is not None:
            stack.pids[name] = pid


@contextlib.contextmanager
def started_stack(app: Path, *, nodes: int, hosts_per_node: int, log_level: str,
                  env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start nats-server, valkey-server and `nalar up --app <app>` (from the main thread: they
    get SIGTERM if this process dies); stop them all, last started first, on the way out
    (also those `start_again` started). `env` adds to (or overrides) the services'
    environment."""
    with tempfile.TemporaryDirectory(prefix="nalar-bench-") as tmp_name, \
            contextlib.ExitStack() as cleanup:
        tmp = Path(tmp_name)
        nats_srv = start_nats(tmp / "nats", log_file=tmp / "nats-server.log")
        cleanup.callback(lambda: stack.nats.stop())
        valkey = start_valkey(tmp / "valkey", appendonly=True, log_file=tmp / "valkey-server.log")
        cleanup.callback(lambda: stack.valkey.stop())
        prefix = "b" + uuid.uuid4().hex[:8]
        port = free_port()
        full_env = {**os.environ, "NALAR_NATS_URL": nats_srv.url, "NALAR_REDIS_URL": valkey.url,
                    "NALAR_LOG_LEVEL": log_level, "NALAR_AUTH_ANONYMOUS": TEST_PRINCIPAL,
                    # the apps have no policy or guardrails file: both off, explicitly
                    "NALAR_AUTH_POLICY": "none", "NALAR_GUARDRAILS": "none", **(env or {})}
        argv = [sys.executable, "-m", "nalar", "up", "--app", str(app),
                "--nodes", str(nodes), "--hosts-per-node", str(hosts_per_node),
                "--port", str(port), "--prefix", prefix, "--data-dir", str(tmp / "data"),
                "--key-file", str(tmp / "api-key")]
        up_log = tmp / "nalar-up.log"
        stack = Stack(tmp, nats_srv, valkey, prefix, _launch(argv, full_env, up_log), up_log,
                      url=f"http://127.0.0.1:{port}", argv=argv, env=full_env)
        cleanup.callback(lambda: stop_process(stack.up, 30))
        stack.pids = {"nats-server": nats_srv.pid, "valkey-server": valkey.pid,
                      "nalar-up": stack.up.pid, "client": os.getpid()}
        yield stack


def _launch(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)


def stop_stack(stack: Stack) -> None:
    """Stop `nalar up` (every service), then valkey-server and nats-server; their data dirs
    stay for `start_again`."""
    stop_process(stack.up, 60)
    stack.valkey.stop(30)
    stack.nats.stop(30)


def start_again(stack: Stack) -> None:
    """Start the servers on their ports and data dirs (returns once they have loaded their
    data), then `nalar up` as before (call `wait_ready` next)."""
    tmp = stack.tmp
    stack.nats = start_nats(stack.nats.data_dir, port=stack.nats.port,
                            monitor_port=stack.nats.monitor_port,
                            log_file=tmp / "nats-server.log", timeout=600)
    stack.valkey = start_valkey(stack.valkey.data_dir, port=stack.valkey.port, appendonly=True,
                                log_file=tmp / "valkey-server.log", timeout=600)
    stack.up = _launch(stack.argv, stack.env, stack.up_log)
    stack.pids = {"nats-server": stack.nats.pid, "valkey-server": stack.valkey.pid,
                  "nalar-up": stack.up.pid, "client": os.getpid()}


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- CPU -------------------------------------------------------------------------------------
def machine_busy_seconds() -> float:
    """CPU time all processes on the machine spent (user, nice and system: interrupt time,
    such as loopback networking, is charged to no process and left out)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]]
    return sum(ticks) / CLK_TCK


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {MACHINE: machine_busy_seconds(),
            **{name: cpu_seconds(pid) for name, pid in pids.items()}}


def other_cores(cores: dict[str, float]) -> float:
    """Cores busy with processes this benchmark did not start (a shared machine skews it)."""
    return round(max(0.0, cores[MACHINE] - sum(v for k, v in cores.items() if k != MACHINE)), 3)


class CpuMeter:
    """CPU seconds each process spends inside the blocks it measures, keyed by phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.spent: dict[str, dict[str, float]] = {}
        self.elapsed = 0.0

    @contextlib.contextmanager
    def measure(self, phase: str) -> Any:
        before, t0 = cpu_snapshot(self.pids), time.perf_counter()
        yield
        after = cpu_snapshot(self.pids)
        self.elapsed += time.perf_counter() - t0
        spent = self.spent.setdefault(phase, {})
        for name in before:
            spent[name] = spent.get(name, 0.0) + after[name] - before[name]

    def per_op_us(self, phase: str, ops: int) -> dict[str, float]:
        spent = sorted(self.spent.get(phase, {}).items(), key=lambda kv: -kv[1])
        return {k: round(v / ops * 1e6, 1) for k, v in spent
                if v / ops >= 1e-6 and k != MACHINE}

    def other_cores(self) -> float:
        total: dict[str, float] = {}
        for spent in self.spent.values():
            for k, v in spent.items():
                total[k] = total.get(k, 0.0) + v / max(self.elapsed, 1e-9)
        return other_cores(total) if total else 0.0


# -- NATS and Redis traffic ------------------------------------------------------------------
def nats_traffic(monitor_port: int) -> dict[str, dict[str, int]]:
    """Messages and bytes each client connection of nats-server published (`in`) and was
    delivered (`out`) so far, by connection name, and the server's totals (`server`, which
    include JetStream's own acks and API traffic)."""
    base = f"http://127.0.0.1:{monitor_port}"
    conns = httpx.get(f"{base}/connz?limit=1024", timeout=5).json().get("connections") or []
    out: dict[str, dict[str, int]] = {}
    for c in conns:
        row = out.setdefault(c.get("name") or f"cid-{c['cid']}",
                             {"in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0})
        for k in row:
            row[k] += int(c.get(k, 0))
    varz = httpx.get(f"{base}/varz", timeout=5).json()
    out["server"] = {k: int(varz.get(k, 0)) for k in ("in_msgs", "out_msgs", "in_bytes",
                                                        "out_bytes")}
    return out


def traffic_per_op(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]],
                   ops: int) -> dict[str, dict[str, float]]:
    """Per operation: what each connection published and was delivered between two snapshots
    (connections that closed meanwhile are left out)."""
    per: dict[str, dict[str, float]] = {}
    for name, row in after.items():
        prev = before.get(name, {})
        d = {k: (v - prev.get(k, 0)) / max(ops, 1) for k, v in row.items()}
        if d["in_msgs"] >= 0.01 or d["out_msgs"] >= 0.01:
            per[name] = {k: round(v, 2) for k, v in d.items()}
    return per


async def redis_calls(url: str) -> dict[str, int]:
    """Commands the Redis server ran so far, by command (`INFO commandstats`); a script's
    own `redis.call`s count under their commands, and the `EVALSHA` once."""
    r = redis.asyncio.Redis.from_url(url)
    try:
        stats: dict[str, Any] = await r.info("commandstats")
    finally:
        await r.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def calls_per_op(before: dict[str, int], after: dict[str, int], ops: int) -> dict[str, float]:
    per = {k: (v - before.get(k, 0)) / max(ops, 1) for k, v in after.items()}
    return {k: round(v, 2) for k, v in sorted(per.items(), key=lambda kv: -kv[1])
            if v >= 0.01 and k not in ("info", "ping")}


# -- py-spy ----------------------------------------------------------------------------------
def _frame(raw: str) -> tuple[str, str]:
    """(`function (file)`, full path) from py-spy's `function (path/to/file.py:line)`."""
    func, _, loc = raw.partition(" (")
    path = loc.rsplit(":", 1)[0]
    return f"{func} ({path.rsplit('/', 1)[-1]})", path


_ENTRY = ("<module>", "main", "serve", "run_service", "bench")


def top_frames(path: Path, ours: Sequence[str], n: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Shares of samples per function from py-spy's collapsed stacks: where the stack ends
    (self), and for the code whose path contains one of `ours`, anywhere on the stack
    (inclusive)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += c
        own[frames[-1][0]] += c
        for name in {name for name, p in frames if any(o in p for o in ours)
                     and not name.startswith(tuple(e + " (" for e in _ENTRY))}:
            incl[name] += c
    if not total:
        return {"self": [], "inclusive": []}
    return {"self": [(f, round(c / total, 3)) for f, c in own.most_common(n)],
            "inclusive": [(f, round(c / total, 3)) for f, c in incl.most_common(n)]}
