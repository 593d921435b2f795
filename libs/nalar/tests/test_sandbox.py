"""The code sandbox (`nalar.sandbox`) with the real bubblewrap and real processes: each test
runs code that tries to get out (network, files outside scratch, a fork bomb, memory, CPU,
output, the parent's environment) and checks both what the code saw and that the host was
untouched. No test skips: without a working bwrap they fail (`make setup` installs it).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nalar.sandbox
import pytest
from nalar.loop import resolve
from nalar.sandbox import Limits, SandboxResult, SandboxUnavailable, run_python, run_shell
from nalar.sandbox.command import tools
from nalar.sandbox.result import Capture
from nalar.toolspec import tool_spec
from nalar_common.errors import NalarError
from nalar_common.testing import wait_until, wait_until_sync

REPO = Path(__file__).resolve().parents[3]
QUICK = Limits(wall_s=3)


def sandbox_processes() -> set[int]:
    """Host pids of sandbox processes: those of uid 65534 when the host is root (bwrap runs
    as it; orphans and zombies included), else the test process's descendants."""
    if os.geteuid() != 0:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(os.getpid())],
                             capture_output=True, text=True).stdout
        return {int(p) for p in out.split()}
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        if re.search(r"^Uid:\s+65534\s", status, re.M):
            found.add(int(entry.name))
    return found


def run_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("nalar-sandbox-*")}


@pytest.fixture
def clean_host() -> Iterator[None]:
    """After the test: no sandbox process left (not even a zombie), no run directory."""
    procs, dirs = sandbox_processes(), run_dirs()
    yield
    left = sandbox_processes() - procs
    assert not left, [describe(pid) for pid in left]
    assert run_dirs() - dirs == set()


def describe(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid}: gone"
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (f"{pid}: {fields['Name'].strip()} {fields['State'].strip()} "
            f"ppid {fields['PPid'].strip()} {cmdline[:200]}")


def test_bwrap_is_installed() -> None:
    assert shutil.which("bwrap"), "bubblewrap is missing: run `make setup` (as root)"
    assert tools().disable_userns, "bwrap >= 0.8 expected (Debian 12's)"


async def test_code_runs_as_nobody_without_capabilities(clean_host: None) -> None:
    r = await run_python(
        "import os\n"
        "print(os.getuid(), os.getgid(), os.getcwd(), os.environ['HOME'])\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "print(6 * 7)")
    assert r.exit_code == 0 and r.killed is None, r
    who, caps, pids, answer = r.stdout.splitlines()
    assert who == "65534 65534 /scratch /scratch"
    assert int(caps, 16) == 0
    assert pids == "[1, 2]"  # its own pid namespace: the init and the code, nothing else
    assert answer == "42"
    assert r.text().startswith("exit code: 0\nstdout:\n65534")


async def test_no_network_inside(clean_host: None) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0nalar-sandbox-test-{os.getpid()}")
    abstract.listen()
    abstract.setblocking(False)
    port = server.getsockname()[1]
    try:
        r = await run_python(
            "import socket\n"
            "def attempt(what, family, address):\n"
            "    s = socket.socket(family)\n"
            "    s.settimeout(2)\n"
            "    try:\n"
            "        s.connect(address)\n"
            "        print(what, 'CONNECTED')\n"
            "    except OSError as e:\n"
            "        print(what, type(e).__name__, e.errno)\n"
            f"attempt('loopback', socket.AF_INET, ('127.0.0.1', {port}))\n"
            "attempt('public', socket.AF_INET, ('1.1.1.1', 53))\n"
            f"attempt('abstract', socket.AF_UNIX, '\\0nalar-sandbox-test-{os.getpid()}')\n"
            "try:\n"
            "    socket.getaddrinfo('example.com', 80)\n"
            "    print('dns RESOLVED')\n"
            "except OSError as e:\n"
            "    print('dns', type(e).__name__)\n"
            "print(sorted(n for _, n in socket.if_nameindex()))\n")
        lines = r.stdout.splitlines()
        assert lines[0] == "loopback ConnectionRefusedError 111", r  # the host's is not there
        assert lines[1] == "public OSError 101", r  # ENETUNREACH: no route at all
        assert lines[2] == "abstract ConnectionRefusedError 111", r
        assert lines[3] == "dns gaierror", r
        assert lines[4] == "['lo']", r
        for listener in (server, abstract):  # nothing reached the host's sockets
            with pytest.raises(BlockingIOError):
                listener.accept()
        fetch = await run_python("import urllib.request\n"
                                 "urllib.request.urlopen('http://1.1.1.1/', timeout=2)")
        assert "Network is unreachable" in fetch.stderr, fetch
        assert "note: the sandbox has no network" in fetch.text()
    finally:
        server.close()
        abstract.close()


async def test_writes_outside_scratch_fail_and_leave_nothing(tmp_path: Path,
                                                             clean_host: None) -> None:
    targets = [tmp_path / "escaped", Path("/etc/nalar-escaped"), Path("/usr/nalar-escaped"),
               REPO / "nalar-escaped", Path("/nalar-escaped"), Path("/dev/nalar-escaped"),
               Path("/sandbox/main.py")]
    r = await run_python(
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('x')\n"
        "        print(path, 'WROTE')\n"
        "    except OSError as e:\n"
        "        print(path, type(e).__name__, e.errno)\n")
    assert r.exit_code == 0, r
    seen = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert seen == {str(tmp_path / "escaped"): "FileNotFoundError 2",  # /tmp is the scratch
                    "/etc/nalar-escaped": "OSError 30",  # EROFS
                    "/usr/nalar-escaped": "OSError 30",
                    str(REPO / "nalar-escaped"): "FileNotFoundError 2",  # not mounted at all
                    "/nalar-escaped": "OSError 30",
                    "/dev/nalar-escaped": "OSError 30",
                    "/sandbox/main.py": "OSError 30"}, r.stdout
    for t in targets[:-1]:
        assert not t.exists(), t


async def test_a_path_made_inside_lands_in_scratch_not_on_the_host(tmp_path: Path,
                                                                   clean_host: None) -> None:
    """/tmp inside is the scratch: the host's tmp_path can be made there, and is gone."""
    r = await run_python(f"import os\nos.makedirs({str(tmp_path)!r})\n"
                         f"open({str(tmp_path / 'x')!r}, 'w').write('x')\nprint('made')")
    assert r.stdout == "made\n", r
    assert os.listdir(tmp_path) == []


async def test_scratch_is_writable_within_a_run_and_gone_after(clean_host: None) -> None:
    first = await run_python(
        "import os, subprocess\n"
        "open('/scratch/notes.txt', 'w').write('kept for this run')\n"
        "os.mkdir('/tmp/sub'); open('/tmp/sub/f', 'w').write('via /tmp')\n"
        "print(open('notes.txt').read(), open('/scratch/sub/f').read(), sep='|')\n"
        "os.chmod('/scratch/sub', 0)  # the host removes it anyway\n")
    assert first.stdout == "kept for this run|via /tmp\n", first
    second = await run_shell("ls -A /scratch /tmp /dev/shm; echo end")
    assert second.stdout.split() == ["/dev/shm:", "/scratch:", "/tmp:", "end"], second


async def test_a_fork_bomb_is_stopped_by_the_process_limit(clean_host: None) -> None:
    limits = Limits(wall_s=3, processes=20)
    # the main script stays (else its exit ends the sandbox, and the bomb with it)
    bomb = asyncio.ensure_future(run_shell(":(){ :|:& };:; sleep 30", limits=limits))
    peak = 0
    started = []
    while not bomb.done():  # the host's loop keeps running, and can start processes
        peak = max(peak, len(sandbox_processes()))
        true = await asyncio.create_subprocess_exec("true")
        started.append(await true.wait())
        await asyncio.sleep(0.05)
    r = bomb.result()
    assert r.killed == "wall_time" and r.timed_out, r
    assert "Resource temporarily unavailable" in r.stderr, r.stderr[-500:]
    # the sandbox's processes and the outer bwrap, never more
    assert 0 < peak <= limits.processes + 1, peak
    assert len(started) > 20 and set(started) == {0}


async def test_the_process_limit_is_per_sandbox(clean_host: None) -> None:
    """Each sandbox has its own count (its own user namespace), so one's fork bomb does not
    starve another running as the same uid."""
    code = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
            "            time.sleep(30)\n            os._exit(0)\n        n += 1\n"
            "except OSError as e:\n    print(n, type(e).__name__, e.errno)\n")
    limits = Limits(processes=16)
    a, b = await asyncio.gather(run_python(code, limits=limits),
                                run_python(code, limits=limits))
    for r in (a, b):
        forked, error, errno = r.stdout.split()
        assert (error, errno) == ("BlockingIOError", "11"), r
        assert int(forked) == limits.processes - 2  # with the code and the sandbox's init
        assert r.exit_code == 0, r  # the sleeping children die with the namespace


async def test_a_memory_hog_gets_memory_error(clean_host: None) -> None:
    r = await run_python("hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))\n",
                         limits=Limits(memory_mib=128))
    assert r.exit_code == 1, r
    assert r.stderr.rstrip().endswith("MemoryError"), r.stderr
    assert "memory is limited to 128 MiB" in r.text()
    big = await run_python("x = bytearray(200 * 1024 * 1024)", limits=Limits(memory_mib=128))
    assert "MemoryError" in big.stderr, big


async def test_an_infinite_loop_is_killed_at_the_cpu_limit(clean_host: None) -> None:
    started = time.monotonic()
    r = await run_python("while True:\n    pass\n", limits=Limits(cpu_s=1, wall_s=10))
    assert r.killed == "cpu_time" and r.signal == signal.SIGXCPU, r
    assert r.exit_code == 128 + signal.SIGXCPU and not r.timed_out
    assert time.monotonic() - started < 5
    assert "killed: the CPU-time limit of 1 s" in r.text()


async def test_a_sleeping_loop_is_killed_at_the_wall_limit(clean_host: None) -> None:
    r = await run_python("import time\nprint('before', flush=True)\nwhile True:\n"
                         "    time.sleep(1)\n", limits=Limits(wall_s=1))
    assert r.timed_out and r.killed == "wall_time" and r.exit_code == 137, r
    assert 1 <= r.duration_s < 3, r
    assert r.stdout == "before\n"  # what it printed before it was killed
    assert "killed: timeout: the wall-time limit of 1 s" in r.text()


async def test_huge_output_is_capped_head_and_tail(clean_host: None) -> None:
    r = await run_python("import sys\nsys.stdout.write('A' * 100 + 'x' * 300_000 + 'Z' * 100)"
                         "\nprint('done', file=sys.stderr)")
    assert r.exit_code == 0 and r.killed is None and r.truncated, r
    assert r.stdout.startswith("A" * 100) and r.stdout.endswith("Z" * 100)
    assert f"[... {300_200 - 65536} bytes cut ...]" in r.stdout
    assert len(r.stdout.encode()) < 64 * 1024 + 100
    assert r.stderr == "done\n"
    assert "output truncated: 65536 bytes kept per stream" in r.text()


async def test_an_output_flood_is_killed(clean_host: None) -> None:
    r = await run_python("while True:\n    print('y' * 4096)\n")
    assert r.killed == "output" and r.truncated and r.exit_code == 137, r
    assert r.duration_s < 5, r


async def test_a_file_over_the_size_limit(clean_host: None) -> None:
    limits = Limits(file_size_mib=2)
    r = await run_shell("head -c 3M /dev/zero > big; s=$?; stat -c %s big; exit $s",
                        limits=limits)
    assert r.killed == "file_size" and r.signal == signal.SIGXFSZ, r
    assert "File size limit exceeded" in r.stderr, r  # SIGXFSZ killed `head`...
    assert r.stdout == f"{2 * 1024 * 1024}\n"  # ...at 2 MiB
    # Python ignores SIGXFSZ: the write fails instead
    py = await run_python("open('big', 'wb').write(b'x' * 3 * 1024 * 1024)", limits=limits)
    assert py.exit_code == 1 and "OSError: [Errno 27] File too large" in py.stderr, py
    assert "files are limited to 2 MiB" in py.text()


async def test_cancelling_the_task_kills_the_sandbox_promptly(clean_host: None) -> None:
    before = sandbox_processes()
    task = asyncio.ensure_future(run_shell("sleep 300 & sleep 300 & sleep 300; wait",
                                           limits=Limits(wall_s=60)))
    await wait_until(lambda: len(sandbox_processes() - before) >= 5,
                     what="the sandbox's sleeps running")
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2
    assert sandbox_processes() - before == set()


def test_under_uvloop_as_agent_hosts_run_it(clean_host: None) -> None:
    import uvloop

    async def scenario() -> tuple[SandboxResult, SandboxResult, float]:
        ok = await run_python("print(6 * 7)")
        slow = await run_python("import time\ntime.sleep(60)", limits=Limits(wall_s=1))
        before = sandbox_processes()
        task = asyncio.ensure_future(run_shell("sleep 300"))
        await wait_until(lambda: len(sandbox_processes() - before) >= 3,
                         what="the sandbox running")
        began = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ok, slow, time.monotonic() - began

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        ok, slow, cancelling = runner.run(scenario())
    assert ok.stdout == "42\n" and ok.exit_code == 0, ok
    assert slow.killed == "wall_time", slow
    assert cancelling < 2


def test_a_dead_host_takes_its_sandboxes_along() -> None:
    """SIGKILL to the process that runs a sandbox (a host crash): bwrap's --die-with-parent
    kills the sandbox, and no process survives it."""
    tmp = tempfile.mkdtemp(prefix="nalar-sandbox-host-")
    os.chmod(tmp, 0o755)  # the run directory must be reachable by uid 65534
    before = sandbox_processes()
    host = subprocess.Popen(
        [sys.executable, "-c", "import asyncio, nalar.sandbox as s\n"
         "asyncio.run(s.run_shell('sleep 300 & sleep 300', limits=s.Limits(wall_s=60)))"],
        env={**os.environ, "TMPDIR": tmp})
    try:
        wait_until_sync(lambda: len(sandbox_processes() - before) >= 4, timeout=30,
                        what="the sandbox running")
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        left = wait_until_sync(lambda: sandbox_processes() - before, until=lambda s: not s,
                               timeout=10, what="the sandbox dying with its host")
        assert left == set()
    finally:
        host.kill()
        shutil.rmtree(tmp)


async def test_the_parents_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch,
                                                      clean_host: None) -> None:
    monkeypatch.setenv("NALAR_TEST_SECRET", "hunter2-sandbox")
    r = await run_shell("env; cat /proc/1/environ | tr '\\0' '\\n'; echo; "
                        "grep -rl hunter2-sandbox /proc/*/environ 2>/dev/null; echo end")
    assert r.stdout.endswith("end\n"), r
    assert "hunter2" not in r.stdout + r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert env["HOME"] == "/scratch" and env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert not {k for k in env if k.startswith("NALAR")}


async def test_shell_and_its_tools(clean_host: None) -> None:
    r = await run_shell("echo $((6 * 7)); id -un; hostname; cd /tmp && touch f && ls; "
                        "unshare --user true || echo no-userns; exit 3")
    assert r.exit_code == 3 and r.killed is None, r
    assert r.stdout.split() == ["42", "sandbox", "sandbox", "f", "no-userns"], r
    assert "exit code: 3" in r.text()


async def test_background_processes_die_with_the_code(clean_host: None) -> None:
    r = await run_shell("(sleep 300 &) ; nohup sleep 300 >/dev/null 2>&1 & echo started")
    assert r.exit_code == 0 and r.stdout == "started\n" and r.duration_s < 3, r


async def test_the_tools_an_agent_loop_gets() -> None:
    out = await nalar.sandbox.python("print(sum(range(10)))")
    assert out == "exit code: 0\nstdout:\n45"
    out = await nalar.sandbox.shell("echo oops >&2; exit 1")
    assert out == "exit code: 1\nstderr:\noops"
    for fn in (nalar.sandbox.python, nalar.sandbox.shell):
        spec = tool_spec(fn)
        d = Limits()
        for fact in (f"{d.wall_s:g} s wall", f"{d.cpu_s} s CPU", f"{d.memory_mib} MiB",
                     f"{d.processes} processes", "no network", "/scratch"):
            assert fact in spec.description, (fn.__name__, fact)
        assert list(spec.parameters["properties"]) == [
            "code" if fn is nalar.sandbox.python else "command"]
        # a function tool of `AgentLoop`, served by the built-in `tools` agent
        assert (resolve(fn).agent, resolve(fn).method) == ("tools", fn.__name__)


async def test_a_missing_bwrap_is_a_typed_error(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    tools.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as err:
            await run_python("print(1)")
    finally:
        monkeypatch.undo()
        tools.cache_clear()
    assert err.value.error_code == "sandbox_unavailable"
    assert "apt-get install bubblewrap" in err.value.message
    back = NalarError.from_wire(err.value.to_wire())
    assert type(back) is SandboxUnavailable


@pytest.fixture
def bwrap_without_namespaces() -> Iterator[Path]:
    """A `bwrap` that fails as one does where user namespaces are not allowed."""
    fake = Path(tempfile.mkdtemp(prefix="nalar-sandbox-fake-"))
    fake.chmod(0o755)  # bwrap runs as uid 65534
    (fake / "bwrap").write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'bubblewrap 0.8.0'; exit 0; }\n"
        "echo 'bwrap: No permissions to creating new namespace, likely because the kernel "
        "does not allow non-privileged user namespaces.' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    yield fake
    shutil.rmtree(fake)


async def test_a_bwrap_without_namespaces_is_a_typed_error(
        monkeypatch: pytest.MonkeyPatch, bwrap_without_namespaces: Path,
        clean_host: None) -> None:
    monkeypatch.setenv("PATH", f"{bwrap_without_namespaces}:{os.environ['PATH']}")
    tools.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as err:
            await run_python("print(1)")
    finally:
        monkeypatch.undo()
        tools.cache_clear()
    assert "No permissions to creating new namespace" in err.value.message
    assert "user.max_user_namespaces" in err.value.message


def test_limits_are_checked() -> None:
    assert Limits().memory_mib == 256 and Limits().processes == 64
    for bad in ({"wall_s": 0}, {"cpu_s": -1}, {"memory_mib": 1.5}, {"processes": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Limits(**bad)  # type: ignore[arg-type]


def test_capture_keeps_head_and_tail() -> None:
    c = Capture(10)
    for chunk in (b"abc", b"defg", b"hij"):
        c.feed(chunk)
    assert (c.text(), c.truncated) == ("abcdefghij", False)
    c.feed(b"KLMNO")
    assert c.truncated and c.text() == "abcde\n[... 5 bytes cut ...]\nKLMNO"
    r = SandboxResult(exit_code=0, stdout="", stderr="", timed_out=False, truncated=False,
                      killed="signal", signal=11, duration_s=0.1)
    assert r.text() == "exit code: 0\nkilled: signal SIGSEGV"
