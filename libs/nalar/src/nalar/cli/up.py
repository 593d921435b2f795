"""`nalar up`: the embedded stack. Starts nats-server and valkey-server from their wheels (unless
`NALAR_NATS_URL` / `NALAR_REDIS_URL` name running ones), then every service as its own process
(`python -m nalar_<name>`), waits until the gateway is ready, streams prefixed logs, starts a
part that exits again (with backoff, see supervisor.py), and stops everything on Ctrl-C,
SIGTERM, or a part that keeps crashing or refuses its configuration.

Children run in their own sessions, so a terminal's Ctrl-C reaches only `nalar up`, which then
stops the services first and the servers last; they still die with it if it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from nalar_common.auth import KeyStore
from nalar_common.errors import Unauthenticated
from nalar_common.redisclient import redis_client
from nalar_common.servers import ServerProcess, start_nats, start_valkey
from nalar_common.subjects import Names

from nalar.cli.credentials import DEFAULT_KEY_FILE
from nalar.cli.supervisor import Child, RestartPolicy, Supervisor


@dataclass
class UpOptions:
    app: Path
    nodes: int = 2
    hosts_per_node: int = 1
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".nalar/data")
    prefix: str = ""
    nats_url: str | None = None
    redis_url: str | None = None
    llm_time_scale: float = 1.0
    host_agents: list[str] = field(default_factory=list)  # per host of a node, in turn
    host_slots: int = 0  # instances a host may run (provisioning); 0 = no limit
    engine_startup_s: float = 0.0
    spawn_hosts: int = 0  # host processes each node's controller may start
    policies: str = ""  # NALAR_GC_POLICIES; empty = the built-in defaults
    ready_timeout_s: float = 90.0
    extra_env: dict[str, str] = field(default_factory=dict)
    key_file: Path = DEFAULT_KEY_FILE  # the dev API key is written here
    restart: RestartPolicy = field(default_factory=RestartPolicy)


class Stack:
    def __init__(self, opts: UpOptions, out: TextIO | None = None) -> None:
        self.opts = opts
        self.out = out or sys.stdout
        self.servers: list[ServerProcess] = []
        self.children: list[Child] = []
        self.nats_url = opts.nats_url or ""
        self.redis_url = opts.redis_url or ""
        self._stop = asyncio.Event()
        self.supervisor: Supervisor | None = None
        self.exit_reason = ""
        self.api_key = ""

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def start_servers(self) -> None:
        data = self.opts.data_dir.resolve()
        logs = data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if not self.nats_url:
            nats = start_nats(data / "nats", log_file=logs / "nats-server.log")
            self.servers.append(nats)
            self.nats_url = nats.url
        if not self.redis_url:
            valkey = start_valkey(data / "valkey", appendonly=True,
                                  log_file=logs / "valkey-server.log")
            self.servers.append(valkey)
            self.redis_url = valkey.url

    def plan(self) -> list[Child]:
        o = self.opts
        base = {
            **os.environ, **o.extra_env,
            "NALAR_NATS_URL": self.nats_url, "NALAR_REDIS_URL": self.redis_url,
            "NALAR_NATS_PREFIX": o.prefix, "PYTHONUNBUFFERED": "1",
        }
        if sys.stdout.isatty():
            base.setdefault("NALAR_LOG_JSON", "false")
        app = str(o.app.resolve())
        # the app's authorization rules, for the gateway and every local controller
        base.setdefault("NALAR_AUTH_POLICY_FILE", str(Path(app) / "config" / "policy.yaml"))
        base.setdefault("NALAR_GUARDRAILS_FILE", str(Path(app) / "config" / "guardrails.yaml"))
        gc = {**base, "NALAR_GC_POLICIES": o.policies} if o.policies else dict(base)
        kids = [Child("state-store", "nalar_state_store", dict(base)),
                Child("global-controller", "nalar_global_controller", gc)]
        host_env = {"NALAR_AGENT_HOST_APP": app, "NALAR_LLM_TIME_SCALE": str(o.llm_time_scale),
                    "NALAR_AGENT_HOST_SLOTS": str(o.host_slots),
                    "NALAR_AGENT_HOST_ENGINE_STARTUP_S": str(o.engine_startup_s)}
        for n in range(1, o.nodes + 1):
            node = f"n{n}"
            # a host the controller starts itself gets this environment too
            kids.append(Child(f"lc-{node}", "nalar_local_controller", {
                **base, **host_env, "NALAR_NODE_NAME": node,
                "NALAR_LC_SPAWN_HOSTS": str(o.spawn_hosts)}))
            for h in range(1, o.hosts_per_node + 1):
                env = {**base, **host_env, "NALAR_NODE_NAME": node,
                       "NALAR_AGENT_HOST_HOST_ID": f"{node}-h{h}"}
                if o.host_agents:
                    env["NALAR_AGENT_HOST_AGENTS"] = o.host_agents[(h - 1) % len(o.host_agents)]
                kids.append(Child(f"host-{node}-{h}", "nalar_agent_host", env))
        kids.append(Child("gateway", "nalar_gateway", {
            **base, "NALAR_GATEWAY_APP": app, "NALAR_GATEWAY_HOST": o.host,
            "NALAR_GATEWAY_PORT": str(o.port)}))
        return kids

    async def _wait_ready(self) -> None:
        url = f"http://{self.opts.host}:{self.opts.port}/readyz"
        deadline = time.monotonic() + self.opts.ready_timeout_s
        while not self._stop.is_set():
            try:
                ok = await asyncio.to_thread(_http_ok, url)
                if ok:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway not ready at {url} after "
                                   f"{self.opts.ready_timeout_s:.0f}s")
            await asyncio.sleep(0.25)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            self.start_servers()  # each returns once ready (Valkey has loaded its data)
            self.api_key = await self.dev_key()
            self.children = self.plan()
            self.supervisor = Supervisor(self.children, self.say, self._give_up,
                                         self.opts.restart)
            async with asyncio.TaskGroup() as tg:
                for child in self.children:
                    if not self._stop.is_set() and await self.supervisor.start(child):
                        tg.create_task(self.supervisor.watch(child))
                ready = tg.create_task(self._wait_ready())
                stop = tg.create_task(self._stop.wait())
                await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
                if ready.done() and ready.exception() is None and not self._stop.is_set():
                    self.banner()
                await self._stop.wait()
                await self.shutdown()
        finally:
            await self.shutdown()
        if self.exit_reason and self.exit_reason != "signal":
            self.say(f"nalar up: stopped because {self.exit_reason}")
            return 1
        return 0

    async def dev_key(self) -> str:
        """An admin key for this machine's user: the one in `key_file` while it is still
        valid in this stack's store, else a new one written there (owner-only)."""
        client = redis_client(self.redis_url)
        store = KeyStore(client, Names(self.opts.prefix))
        path = self.opts.key_file
        try:
            try:
                old = path.read_text().strip()
                await store.verify(old)
                return old
            except (OSError, Unauthenticated):
                pass
            key = await store.create("dev", ["admin"], "default")
        finally:
            await client.aclose()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(key + "\n")
        return key

    def banner(self) -> None:
        self.say("")
        self.say(f"  Nalar is up: app {self.opts.app}")
        self.say(f"  gateway   http://{self.opts.host}:{self.opts.port}   "
                 f"(API docs at /docs)")
        self.say(f"  nats      {self.nats_url}   (prefix {self.opts.prefix or '-'})")
        self.say(f"  redis     {self.redis_url}")
        self.say(f"  data      {self.opts.data_dir.resolve()}")
        self.say(f"  nodes     {self.opts.nodes} x {self.opts.hosts_per_node} agent host(s)")
        self.say(f"  api key   in {self.opts.key_file} (the nalar command and the examples "
                 f"read it there), or export:")
        self.say(f"  NALAR_API_KEY={self.api_key}")
        self.say("  Ctrl-C stops everything.")
        self.say("")

    def _on_signal(self) -> None:
        if not self.exit_reason:
            self.exit_reason = "signal"
        self._stop.set()

    def _give_up(self, reason: str) -> None:
        """A part crash-loops or refused its configuration: stop the stack, exit non-zero."""
        if not self.exit_reason:
            self.exit_reason = reason
        self._stop.set()

    async def shutdown(self, grace: float = 30.0) -> None:
        """Stop in order: intake (gateway), then the hosts (they finish what runs and still
        need their controllers and NATS for that), then the controllers and the state store,
        then the servers. Nothing is restarted from here on. Idempotent. `grace` outlasts a
        service's own limit (its stop is cancelled after 15 s, then its connection drains for
        up to 5 s) before a kill."""
        self._stop.set()
        if self.supervisor is not None:
            await self.supervisor.stop()
        for stage in _SHUTDOWN_ORDER:
            group = [c.proc for c in self.children
                     if c.proc and c.proc.returncode is None and c.module in stage]
            for proc in group:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            if group:
                await asyncio.wait([asyncio.ensure_future(p.wait()) for p in group],
                                   timeout=grace)
            for proc in group:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        for server in reversed(self.servers):
            await asyncio.to_thread(server.stop)
        self.servers.clear()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except Exception:
        return False


_SHUTDOWN_ORDER = (
    {"nalar_gateway"},
    {"nalar_agent_host"},
    {"nalar_local_controller", "nalar_global_controller", "nalar_state_store"},
)


def run_up(opts: UpOptions) -> int:
    code = 1
    try:
        code = asyncio.run(Stack(opts).run())
    except* TimeoutError as group:  # readiness: a message, not a traceback
        for exc in group.exceptions:
            print(f"nalar up: {exc}", file=sys.stderr)
    return code
