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
from typing import IO, TypeVar

import httpx
from nalar_common.servers import die_with_parent, free_port
from nalar_common.testing import TEST_PRINCIPAL, WaitTimeout, wait_until_sync

ROOT = Path(__file__).resolve().parents[1]
BASIC_APP = ROOT / "tests" / "apps" / "basic"
# every use of a config file looks at it again: an edit is in force from the next request on
CONFIG_CHECKS = {"NALAR_CONFIG_CHECK_S": "0"}
T = TypeVar("T")


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
           "NALAR_LOG_LEVEL": "INFO", "NALAR_AUTH_ANONYMOUS": TEST_PRINCIPAL, **CONFIG_CHECKS,
           **config_env(app, extra_env), **(extra_env or {})}
    out = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nalar", "up", "--app", str(app), "--nodes", str(nodes),
         "--hosts-per-node", str(hosts_per_node), "--port", str(port), "--prefix", prefix,
         "--data-dir", str(log.parent / "data"), "--key-file", str(log.parent / "api-key"),
         *args],
        env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:  # once drivers are up on every node
        if proc.poll() is not None:
            raise RuntimeError(f"nalar up exited early:\n{log.read_text()[-4000:]}")
        r = httpx.get(f"{url}/readyz", timeout=2)
        return r.status_code == 200 and len(r.json()["nodes"]) == nodes

    try:
        wait_until_sync(ready, what=f"the stack ready on {nodes} nodes", timeout=90,
                        interval=0.2, ignore=(httpx.HTTPError,))
    except WaitTimeout as exc:
        proc.kill()
        raise WaitTimeout(f"{exc.what}\n{log.read_text()[-4000:]}", exc.timeout,
                          exc.last) from None
    return StackHandle(url, nats_url, redis_url, prefix, log, proc)


OPEN_POLICY = "rules:\n  - {match: {}, access: all}\n"  # everyone may run everything
NO_LIMITS = "limits: []\n"


@contextmanager
def live_config(path: Path, restore: str) -> Iterator[Callable[[str], None]]:
    """A writer for a config file the stack rereads while it runs (policy, guardrails): the
    test stacks look at it on every use (`CONFIG_CHECKS`), so what a write puts there is in
    force from the next request on; `restore` is written back at the end (a deleted file
    would keep the last rules in force)."""

    def write(text: str) -> None:
        # whole (never half-written when a service reads it), and a new inode and mtime (an
        # edit within one clock tick, of the same size, is seen too)
        fresh = path.with_name(f".{path.name}.new")
        fresh.write_text(text)
        stamp = time.time_ns()
        if path.exists():
            stamp = max(stamp, path.stat().st_mtime_ns + 1_000_000)
        os.utime(fresh, ns=(stamp, stamp))
        os.replace(fresh, path)

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


class NotReady(Exception):
    """What a readiness check raised (the services are not there yet): keep waiting."""


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

    def wait_until(self, ready: Callable[[], T], timeout: float = 60,
                   what: str = "services ready", until: Callable[[T], object] = bool) -> T:
        """Poll `ready` (an exception counts as not ready) until what it returns is truthy
        (or passes `until`), and return that; fail at once if a service exits, with every log
        when time runs out."""
        def poll() -> T:
            self.check_alive()  # a service that exited ends the wait at once
            try:
                return ready()
            except Exception as exc:
                raise NotReady(exc) from exc

        try:
            value: T = wait_until_sync(poll, what=what, until=until, timeout=timeout,
                                       interval=0.1, ignore=(NotReady,))
            return value
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc.what}\n{self.logs()}", exc.timeout, exc.last) from None

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
            **CONFIG_CHECKS, **config_env(app, extra_env), **(extra_env or {})}
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


@contextmanager
def two_hosts(app: Path, nats_url: str, redis_url: str, log_dir: Path, *,
              extra_env: Mapping[str, str] | None = None) -> Iterator[Services]:
    """A local controller, two agent hosts (`host-a`, `host-b`) and a gateway on node `n1`
    as separate processes, so a test can kill one host; ready once each host runs a driver
    instance (instances expire 2 s after their host dies); stopped at the end."""
    handle = start_services(app, nats_url, redis_url, log_dir, [
        ("lc", "nalar_local_controller", {}),
        ("host-a", "nalar_agent_host", {"NALAR_AGENT_HOST_HOST_ID": "a"}),
        ("host-b", "nalar_agent_host", {"NALAR_AGENT_HOST_HOST_ID": "b"}),
        ("gateway", "nalar_gateway", {}),
    ], extra_env={"NALAR_NODE_NAME": "n1", "NALAR_NATS_INSTANCE_TTL_S": "2",
                  **(extra_env or {})})
    try:
        handle.wait_until(lambda: httpx.get(f"{handle.url}/readyz").json().get(
            "driver_instances") == 2, what="a driver instance on each host")
        yield handle
    finally:
        handle.stop()
