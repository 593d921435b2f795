"""The bubblewrap (`bwrap`) command line of one sandboxed run, and the run's directory on
the host (docs/sandbox.md says why each flag is there).

The layout inside the sandbox:

    /usr, /bin, /lib*     the host's, read-only (merged-/usr symlinks as the host has them)
    /etc                  the loader's cache, localtime, alternatives, and a passwd, group
                          and hosts of the sandbox's own; nothing else of the host's /etc
    /proc, /dev           a procfs of the sandbox's pid namespace; bwrap's minimal /dev
                          (null, zero, full, random, urandom, tty, pts), read-only
    /scratch              the run's scratch directory, the only writable place, also
                          mounted at /tmp and /dev/shm; the working directory and $HOME
    /sandbox/main.py|sh   the code to run, read-only

The code runs as uid/gid 65534 inside; bwrap itself is started as uid 65534 when the host
is root, since the kernel ignores RLIMIT_NPROC for root (a fork bomb would not stop).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nalar_common.errors import TerminalError

from nalar.sandbox.result import MIB, Limits

SANDBOX_UID = 65534  # `nobody`: owns nothing on the host
SCRATCH = "/scratch"
PROGRAM_DIR = "/sandbox"
INSTALL_HINT = ("install bubblewrap: `apt-get install bubblewrap` (Debian/Ubuntu; `make setup` "
                "does it when run as root), `dnf install bubblewrap` (Fedora)")
USERNS_HINT = ("bubblewrap needs unprivileged user namespaces: sysctl user.max_user_namespaces "
               "> 0 (and kernel.unprivileged_userns_clone=1 on older Debian kernels, "
               "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04); in a container "
               "the runtime must allow them (Docker's default seccomp profile does not)")
# host /etc entries the dynamic loader and common tools want, when they exist
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# The sandbox's init (pid 1 of its pid namespace, `--as-pid-1`): sets the rlimits (soft and
# hard, so the code cannot raise them; inherited by all it starts), tells the host the
# sandbox is up (the ready fd), starts the code and reaps orphans until the code exits, then
# exits with its status (128 + N for signal N) and the kernel kills whatever is left. It
# replaces bwrap's own init, which exits without waiting to be reaped: the outer bwrap
# returns at once and leaves it a zombie of the host's pid 1.
LAUNCHER = """\
import os, resource, signal, sys
spec, ready, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for item in spec.split(","):
    name, soft, hard = item.split(":")
    kind = getattr(resource, "RLIMIT_" + name)
    ceiling = resource.getrlimit(kind)[1]
    soft, hard = int(soft), int(hard)
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))
os.write(ready, b"ok")
os.close(ready)
code = os.fork()
if code == 0:
    try:  # as the shell leaves them, not as Python does (it ignores both)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
while True:
    pid, status = os.wait()
    if pid == code:
        status = os.waitstatus_to_exitcode(status)
        os._exit(128 - status if status < 0 else status)
"""


class SandboxUnavailable(TerminalError):
    """The sandbox cannot run here: bubblewrap is missing, or it cannot create the
    namespaces it needs; the message names what is missing and how to get it."""

    code = "sandbox_unavailable"
    http_status = 500


@dataclass(frozen=True)
class Tools:
    """What a run needs from the host: bwrap (and what it supports) and an interpreter."""

    bwrap: str
    disable_userns: bool  # bwrap >= 0.8: the code cannot create user namespaces itself
    python: str  # the interpreter inside (for the launcher and for Python code)
    python_prefix: str | None  # its installation, bound read-only when it is not under /usr
    shell: str  # bash, or sh where there is none


@functools.cache
def tools() -> Tools:
    """bwrap and the interpreter, found once per process; `SandboxUnavailable` when bwrap
    is not installed."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"the code sandbox needs bubblewrap (`bwrap`), which is not "
                                 f"on PATH: {INSTALL_HINT}", details={"missing": "bwrap"})
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"{bwrap} does not run: {exc}; {INSTALL_HINT}") from exc
    found = re.search(r"(\d+)\.(\d+)", version)
    disable_userns = found is not None and (int(found[1]), int(found[2])) >= (0, 8)
    shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
    if Path("/usr/bin/python3").exists():  # the system's: all of it under /usr
        return Tools(bwrap, disable_userns, "/usr/bin/python3", None, shell)
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    prefix = None if sys.base_prefix.startswith("/usr/") else sys.base_prefix
    return Tools(bwrap, disable_userns, base, prefix, shell)


def as_sandbox_user() -> list[str]:
    """What bwrap's command line starts with: when the host is root, util-linux's `setpriv`
    to become uid/gid 65534 without groups first (bwrap is not setuid: it uses unprivileged
    user namespaces), since the kernel ignores RLIMIT_NPROC for root; else nothing (bwrap
    runs as the host's user). `setpriv` and not Popen's `user=`: uvloop has no such thing."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise SandboxUnavailable("the code sandbox needs `setpriv` (util-linux) to drop root "
                                 "before starting bwrap: apt-get install util-linux",
                                 details={"missing": "setpriv"})
    return [setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
            "--"]


class RunDir:
    """The run's directory on the host: `scratch/` (mounted read-write), `program/` (the
    code, read-only) and `etc/` (passwd, group, hosts); owned by the user bwrap runs as and
    removed after the run."""

    def __init__(self, filename: str, source: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="nalar-sandbox-"))
        owner = SANDBOX_UID if os.geteuid() == 0 else None
        try:
            for sub in ("scratch", "program", "etc"):
                (self.path / sub).mkdir(mode=0o700)
            (self.path / "program" / filename).write_text(source)
            (self.path / "etc" / "passwd").write_text(
                f"root:x:0:0:root:/root:/bin/sh\n"
                f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{SCRATCH}:/bin/sh\n")
            (self.path / "etc" / "group").write_text(f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n")
            (self.path / "etc" / "hosts").write_text("127.0.0.1 localhost sandbox\n"
                                                     "::1 localhost\n")
            if owner is not None:
                for p in (self.path, *self.path.rglob("*")):
                    os.chown(p, owner, owner)
        except BaseException:
            self.remove()
            raise

    @property
    def scratch(self) -> Path:
        return self.path / "scratch"

    def remove(self) -> None:
        """Delete everything, whatever the code did to the permissions of its files."""

        def unlock(func: Any, path: str, _exc: Any) -> None:
            os.chmod(os.path.dirname(path), 0o700)  # a directory the code made unwritable
            func(path)

        shutil.rmtree(self.path, onerror=unlock)


def bwrap_argv(t: Tools, run: RunDir, argv: list[str], limits: Limits, ready_fd: int,
               info_fd: int) -> list[str]:
    """The whole command line: bwrap's flags, the launcher and the code's own argv."""
    args = [*as_sandbox_user(), t.bwrap,
            # a user namespace in which the code is uid 65534 without capabilities; it may
            # not make user namespaces of its own (the kernel's largest attack surface)
            "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            *(["--disable-userns"] if t.disable_userns else []), "--cap-drop", "ALL",
            # its own pids (it sees and signals only itself), SysV IPC, hostname, cgroup
            # view, and a network namespace with nothing but its own loopback
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--unshare-net", "--hostname", "sandbox",
            # dies with the host process; no controlling terminal (TIOCSTI injection)
            "--die-with-parent", "--new-session", "--as-pid-1",
            "--ro-bind", "/usr", "/usr"]
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name in ("passwd", "group", "hosts"):
        args += ["--ro-bind", str(run.path / "etc" / name), f"/etc/{name}"]
    if t.python_prefix is not None:
        args += ["--ro-bind", t.python_prefix, t.python_prefix]
    scratch = str(run.scratch)
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
             "--bind", scratch, SCRATCH, "--bind", scratch, "/tmp", "--bind", scratch, "/dev/shm",
             "--ro-bind", str(run.path / "program"), PROGRAM_DIR,
             "--remount-ro", "/", "--chdir", SCRATCH,
             "--clearenv", *_setenv(t), "--info-fd", str(info_fd),
             "--", t.python, "-I", "-S", "-c", LAUNCHER, rlimit_spec(limits), str(ready_fd),
             *argv]
    return args


def _setenv(t: Tools) -> list[str]:
    path = "/usr/local/bin:/usr/bin:/bin"
    if t.python_prefix is not None:
        path = f"{os.path.dirname(t.python)}:{path}"
    env = {"PATH": path, "HOME": SCRATCH, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "USER": "sandbox", "LOGNAME": "sandbox", "SHELL": "/bin/sh",
           "MALLOC_ARENA_MAX": "2"}  # glibc's per-thread arenas would eat RLIMIT_AS
    return [a for k, v in env.items() for a in ("--setenv", k, v)]


def rlimit_spec(limits: Limits) -> str:
    """`NAME:soft:hard,...` for the launcher; CPU gets a hard limit a second past the soft
    one (SIGXCPU first, then SIGKILL for code that catches it)."""
    values = {"CPU": (limits.cpu_s, limits.cpu_s + 1),
              "AS": (limits.memory_mib * MIB,) * 2,
              "NPROC": (limits.processes,) * 2,
              "FSIZE": (limits.file_size_mib * MIB,) * 2,
              "NOFILE": (limits.open_files,) * 2,
              "CORE": (0, 0)}
    return ",".join(f"{k}:{soft}:{hard}" for k, (soft, hard) in values.items())
