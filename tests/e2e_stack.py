"""Starting and stopping the whole stack as real processes for tests: `nalar up`
(`start_stack`), or chosen services one by one (`start_services`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from nalar_common.servers import die_with_parent, free_port
from nalar_common.testing import TEST_PRINCIPAL

ROOT = Path(__file__).resolve().parents[1]
BASIC_APP = ROOT / "tests" / "apps" / "basic"


@dataclass
class StackHandle:
    url: str
    nats_url: str
    redis_url: str
    prefix: str
    log: Path
    proc: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def config_env(app: Path, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    """Authorization and guardrails for a test stack: the files a test names (or the app's
    own `config/`), else turned off explicitly (services refuse to start without either)."""
    env = dict(extra_env or {})
    out = {}
    if "NALAR_AUTH_POLICY_FILE" not in env and not (app / "config" / "policy.yaml").exists():
        out["NALAR_AUTH_POLICY"] = "none"
    if "NALAR_GUARDRAILS_FILE" not in env and \
            not (app / "config" / "guardrails.yaml").exists():
        out["NALAR_GUARDRAILS"] = "none"
    return out


def start_stack(app: Path, nats_url: str, redis_url: str, log: Path, *, nodes: int = 2,
                hosts_per_node: int = 1, extra_env: dict[str, str] | None = None,
                args: tuple[str, ...] = ()) -> StackHandle:
    port = free_port()
    prefix = "e" + uuid.uuid4().hex[:8]
    env = {**os.environ, "NALAR_NATS_URL": nats_url, "NALAR_REDIS_URL": redis_url,
           "NALAR_LOG_LEVEL": "INFO", "NALAR_AUTH_ANONYMOUS": TEST_PRINCIPAL,
           **config_env(app, extra_env), **(extra_env or {})}
    out = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nalar", "up", "--app", str(app), "--nodes", str(nodes),
         "--hosts-per-node", str(hosts_per_node), "--port", str(port), "--prefix", prefix,
         "--data-dir", str(log.parent / "data"), "--key-file", str(log.parent / "api-key"),
         *args],
        env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nalar up exited early:\n{log.read_text()[-4000:]}")
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            # ready once drivers are up on every node
            if r.status_code == 200 and len(r.json()["nodes"]) == nodes:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"stack not ready:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    return StackHandle(url, nats_url, redis_url, prefix, log, proc)


OPEN_POLICY = "rules:\n  - {match: {}, access: all}\n"  # everyone may run everything
NO_LIMITS = "limits: []\n"


@contextmanager
def live_config(path: Path, restore: str) -> Iterator[Callable[[str], None]]:
    """A writer for a config file the stack rereads while it runs (policy, guardrails): each
    write waits until the services have it (they check once a second); `restore` is written
    back at the end (a deleted file would keep the last rules in force)."""

    def write(text: str) -> None:
        path.write_text(text)
        stamp = time.time() + 0.1 * len(text)  # a new mtime even within one clock tick
        os.utime(path, (stamp, stamp))
        time.sleep(1.3)

    try:
        yield write
    finally:
        write(restore)


def stop_stack(handle: StackHandle) -> None:
    if handle.proc.poll() is None:
        handle.proc.send_signal(signal.SIGTERM)
        try:
            handle.proc.wait(30)
        except subprocess.TimeoutExpired:
            handle.proc.kill()
            handle.proc.wait()


@dataclass
class Services:
    """Service processes started by `start_services`; each logs to `<log_dir>/<name>.log`."""

    url: str  # the gateway's, if one was started
    nats_url: str
    redis_url: str
    prefix: str
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_paths: dict[str, Path] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list, repr=False)

    def logs(self, tail: int = 3000) -> str:
        """The end of every service's log, for assertion messages."""
        return "\n".join(f"--- {name} (rc={p.poll()}):\n"
                         f"{self.log_paths[name].read_text(errors='replace')[-tail:]}"
                         for name, p in self.procs.items())

    def start(self, app: Path, services: Sequence[tuple[str, str, Mapping[str, str]]],
              extra_env: Mapping[str, str] | None = None) -> None:
        """Start more services (or start one again after it died) on the same servers and
        prefix; each logs to a new file."""
        more = start_services(app, self.nats_url, self.redis_url,
                              self.log_dir / f"more{len(self._logs)}", services,
                              prefix=self.prefix, extra_env=extra_env)
        self.procs.update(more.procs)
        self.log_paths.update(more.log_paths)
        self._logs += more._logs

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"services exited: {dead}\n{self.logs()}")

    def wait_until(self, ready: Callable[[], bool], timeout: float = 60,
                   what: str = "services ready") -> None:
        """Poll `ready` (exceptions count as not ready) until true; fail early if a service
        exits."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                if ready():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.1)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every service at once, wait up to `grace` s in all, then SIGKILL."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self._logs:
            f.close()


def start_services(app: Path, nats_url: str, redis_url: str, log_dir: Path,
                   services: Sequence[tuple[str, str, Mapping[str, str]]], *,
                   prefix: str | None = None,
                   extra_env: Mapping[str, str] | None = None) -> Services:
    """Start `python -m <module>` for each `(name, module, env)` in `services`, against the
    given servers under a name prefix (random unless given). Every process gets the app
    (`NALAR_AGENT_HOST_APP`, `NALAR_GATEWAY_APP`), the gateway port (free, in `Services.url`),
    then `extra_env`, then its own `env` (e.g. `NALAR_NODE_NAME`,
    `NALAR_AGENT_HOST_HOST_ID`). Nothing waits for readiness: see `Services.wait_until`."""
    prefix = prefix or "s" + uuid.uuid4().hex[:8]
    port = free_port()
    base = {**os.environ, "NALAR_NATS_URL": nats_url, "NALAR_REDIS_URL": redis_url,
            "NALAR_NATS_PREFIX": prefix, "NALAR_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
            "NALAR_AGENT_HOST_APP": str(app), "NALAR_GATEWAY_APP": str(app),
            "NALAR_GATEWAY_PORT": str(port), "NALAR_AUTH_ANONYMOUS": TEST_PRINCIPAL,
            **config_env(app, extra_env), **(extra_env or {})}
    log_dir.mkdir(parents=True, exist_ok=True)
    handle = Services(f"http://127.0.0.1:{port}", nats_url, redis_url, prefix, log_dir)
    try:
        for name, module, env in services:
            handle.log_paths[name] = log_dir / f"{name}.log"
            out = open(handle.log_paths[name], "wb")
            handle._logs.append(out)
            handle.procs[name] = subprocess.Popen(
                [sys.executable, "-m", module], env={**base, **env}, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    except BaseException:
        handle.stop(grace=5)
        raise
    return handle


@contextmanager
def one_node(app: Path, nats_url: str, redis_url: str, log_dir: Path, *,
             state_store: Mapping[str, str] | None = None,
             gateway: Mapping[str, str] | None = None,
             extra_env: Mapping[str, str] | None = None) -> Iterator[Services]:
    """The smallest whole stack as separate processes (a local controller, one agent host, a
    state store and a gateway on node `n1`), ready to take runs; stopped at the end. Each
    service's own environment on top (`state_store`, `gateway`)."""
    handle = start_services(app, nats_url, redis_url, log_dir, [
        ("lc", "nalar_local_controller", {}),
        ("host", "nalar_agent_host", {"NALAR_AGENT_HOST_HOST_ID": "a"}),
        ("state-store", "nalar_state_store", dict(state_store or {})),
        ("gateway", "nalar_gateway", dict(gateway or {})),
    ], extra_env={"NALAR_NODE_NAME": "n1", **(extra_env or {})})
    try:
        handle.wait_until(lambda: httpx.get(f"{handle.url}/readyz").status_code == 200,
                          what="a driver instance")
        yield handle
    finally:
        handle.stop()
