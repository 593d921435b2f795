"""One sandboxed run: start bwrap, pump its output into bounded buffers, kill the whole
sandbox at the wall-time limit, on an output flood or when the awaiting task is cancelled,
reap it, and remove its directory.

Killing the sandbox means SIGKILL to its pid-namespace init (the launcher, pid 1 there;
its host pid comes from bwrap's `--info-fd`, held as a pidfd so that it cannot be confused
with a reused pid): the kernel then kills every process of the namespace, however the code
forked or double-forked, and the outer bwrap reaps its child and exits, so nothing is left
behind for anyone else to reap.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from asyncio.subprocess import DEVNULL, PIPE, Process
from contextlib import suppress

from nalar.sandbox.command import (
    PROGRAM_DIR,
    SANDBOX_UID,
    USERNS_HINT,
    RunDir,
    SandboxUnavailable,
    Tools,
    bwrap_argv,
    tools,
)
from nalar.sandbox.result import FLOOD_FACTOR, Capture, Limits, SandboxResult

KILL_GRACE_S = 5.0  # for the outer bwrap to exit once its sandbox is killed
HOST_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # bwrap's own
SIGNALS = {signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size"}
_STOPPING: set[asyncio.Task[None]] = set()  # cleanups that outlive a cancelled caller


async def run_python(code: str, *, limits: Limits | None = None) -> SandboxResult:
    """Run `code` as a Python script (`/sandbox/main.py`, isolated mode, unbuffered) with
    the host's system interpreter inside the sandbox."""
    python = tools().python
    return await _run("main.py", code, [python, "-I", "-u", f"{PROGRAM_DIR}/main.py"], limits)


async def run_shell(command: str, *, limits: Limits | None = None) -> SandboxResult:
    """Run `command` as a bash script (`/sandbox/main.sh`; sh where there is no bash)."""
    shell = tools().shell
    return await _run("main.sh", command, [shell, f"{PROGRAM_DIR}/main.sh"], limits)


async def _run(filename: str, source: str, argv: list[str],
               limits: Limits | None) -> SandboxResult:
    limits = limits or Limits()
    t = tools()
    run = RunDir(filename, source)
    try:
        box = await _Sandbox.start(t, run, argv, limits)
    except BaseException:
        run.remove()
        raise
    try:
        return await box.wait()
    finally:
        # shielded: a caller cancelled again still gets the sandbox killed and reaped
        stopping = asyncio.ensure_future(box.stop())
        _STOPPING.add(stopping)
        stopping.add_done_callback(_STOPPING.discard)
        await asyncio.shield(stopping)


class _Sandbox:
    def __init__(self, proc: Process, ready_fd: int, info_fd: int, limits: Limits,
                 run: RunDir) -> None:
        self.proc = proc
        self.limits = limits
        self.run = run
        self.began = time.monotonic()
        self.out = Capture(limits.output_bytes)
        self.err = Capture(limits.output_bytes)
        self.killed: str | None = None
        self.pidfd: int | None = None
        self.ready = asyncio.ensure_future(_read_all(ready_fd))  # b"ok": the code started
        self.info = asyncio.ensure_future(self._watch(info_fd))

    @classmethod
    async def start(cls, t: Tools, run: RunDir, argv: list[str], limits: Limits) -> _Sandbox:
        ready_r, ready_w = os.pipe()
        info_r, info_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *bwrap_argv(t, run, argv, limits, ready_w, info_w), stdin=DEVNULL,
                stdout=PIPE, stderr=PIPE, pass_fds=(ready_w, info_w), env=HOST_ENV, cwd="/",
                start_new_session=True)
        except BaseException as exc:
            os.close(ready_r)
            os.close(info_r)
            if isinstance(exc, OSError):
                raise SandboxUnavailable(f"cannot start {t.bwrap}: {exc}") from exc
            raise
        finally:
            os.close(ready_w)
            os.close(info_w)
        return cls(proc, ready_r, info_r, limits, run)

    async def _watch(self, info_fd: int) -> None:
        """The host pid of the sandbox's init, from bwrap's info, as a pidfd."""
        try:
            pid = int(json.loads(await _read_all(info_fd))["child-pid"])
            self.pidfd = os.pidfd_open(pid)
        except (ValueError, KeyError, TypeError, ProcessLookupError):
            return  # bwrap failed before making it, or it is gone already
        if self.killed is not None:
            self.kill(self.killed)

    def kill(self, reason: str) -> None:
        """SIGKILL the sandbox (its init: the kernel kills the rest); the first reason
        sticks."""
        if self.killed is None:
            self.killed = reason
        if self.pidfd is not None:
            with suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        elif self.proc.returncode is None:  # not made yet: bwrap kills it as it dies
            with suppress(ProcessLookupError):
                self.proc.kill()

    async def _pump(self, stream: asyncio.StreamReader | None, capture: Capture) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            capture.feed(chunk)
            if capture.total > FLOOD_FACTOR * self.limits.output_bytes and self.killed is None:
                self.kill("output")

    async def wait(self) -> SandboxResult:
        timer = asyncio.get_running_loop().call_later(self.limits.wall_s, self.kill,
                                                      "wall_time")
        pumps = [asyncio.ensure_future(self._pump(self.proc.stdout, self.out)),
                 asyncio.ensure_future(self._pump(self.proc.stderr, self.err))]
        try:
            await self.proc.wait()
            # the pipes close as the namespace dies; bounded, in case anything outlives it
            await asyncio.wait([*pumps, self.ready, self.info], timeout=KILL_GRACE_S)
        finally:
            timer.cancel()
            for pump in pumps:
                pump.cancel()
        return self._result()

    def _result(self) -> SandboxResult:
        code = self.proc.returncode
        assert code is not None
        code = 128 - code if code < 0 else code  # bwrap itself killed: as a shell says it
        if not (self.ready.done() and not self.ready.cancelled() and self.ready.result()):
            said = self.err.text().strip() or f"bwrap exited with {code}"
            raise SandboxUnavailable(f"the code sandbox could not start: {said}{_hint(said)}",
                                     details={"exit_code": code, "stderr": said[-2000:]})
        sig = code - 128 if 128 < code <= 128 + signal.SIGRTMAX else None
        killed = self.killed
        if killed is None and sig is not None:
            killed = SIGNALS.get(signal.Signals(sig), "signal") \
                if sig in signal.valid_signals() else "signal"
        return SandboxResult(
            exit_code=code, stdout=self.out.text(), stderr=self.err.text(),
            timed_out=self.killed == "wall_time",
            truncated=self.out.truncated or self.err.truncated, killed=killed, signal=sig,
            duration_s=round(time.monotonic() - self.began, 3), limits=self.limits)

    async def stop(self) -> None:
        """Kill the sandbox if it still runs, reap bwrap, remove the run's directory."""
        try:
            if self.proc.returncode is None:
                if self.pidfd is None:  # bwrap is writing its info right now
                    await asyncio.wait({self.info}, timeout=1.0)
                self.kill(self.killed or "cancelled")
                try:
                    await asyncio.wait_for(self.proc.wait(), KILL_GRACE_S)
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
            self.ready.cancel()
            self.info.cancel()
        finally:
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
            await asyncio.to_thread(self.run.remove)


def _hint(said: str) -> str:
    if "source path" in said:
        return (f"; the run directory (under {tempfile.gettempdir()}, TMPDIR) and the "
                f"interpreter must be reachable by uid {SANDBOX_UID} (bwrap runs as it)")
    if any(w in said for w in ("namespace", "uid map", "Operation not permitted")):
        return f"; {USERNS_HINT}"
    return ""


async def _read_all(fd: int) -> bytes:
    """Everything written to a pipe until its writers close it, without blocking the loop."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    try:
        return await reader.read()
    finally:
        transport.close()
