"""Starting and stopping the whole stack as real processes (`nalar up`) for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from nalar_common.servers import die_with_parent, free_port

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


def start_stack(app: Path, nats_url: str, redis_url: str, log: Path, *, nodes: int = 2,
                hosts_per_node: int = 1, extra_env: dict[str, str] | None = None,
                args: tuple[str, ...] = ()) -> StackHandle:
    port = free_port()
    prefix = "e" + uuid.uuid4().hex[:8]
    env = {**os.environ, "NALAR_NATS_URL": nats_url, "NALAR_REDIS_URL": redis_url,
           "NALAR_LOG_LEVEL": "INFO", **(extra_env or {})}
    out = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nalar", "up", "--app", str(app), "--nodes", str(nodes),
         "--hosts-per-node", str(hosts_per_node), "--port", str(port), "--prefix", prefix,
         "--data-dir", str(log.parent / "data"), *args],
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


def stop_stack(handle: StackHandle) -> None:
    if handle.proc.poll() is None:
        handle.proc.send_signal(signal.SIGTERM)
        try:
            handle.proc.wait(30)
        except subprocess.TimeoutExpired:
            handle.proc.kill()
            handle.proc.wait()
