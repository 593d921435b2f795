"""What a sandboxed run may use (`Limits`) and what it gave back (`SandboxResult`), with the
bounded buffer that keeps a stream's output (its head and its tail: a traceback is at the
end) without ever holding more than the cap."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, fields

MIB = 1024 * 1024
# output past this many times the cap (per stream) is a flood: the sandbox is killed rather
# than have the host read it until the wall-time limit (reading is the host's CPU)
FLOOD_FACTOR = 16


@dataclass(frozen=True)
class Limits:
    """The resources of one run. Each is enforced by the kernel inside the sandbox (rlimits
    set before the code starts, hard and soft alike, so the code cannot raise them) except
    `wall_s` and `output_bytes`, which the host enforces."""

    wall_s: float = 10.0  # then the whole sandbox is killed
    cpu_s: int = 5  # RLIMIT_CPU: SIGXCPU at this, SIGKILL a second later
    memory_mib: int = 256  # RLIMIT_AS, per process: allocations past it fail (MemoryError)
    processes: int = 64  # RLIMIT_NPROC: processes and threads of the sandbox, together
    file_size_mib: int = 16  # RLIMIT_FSIZE: the largest file it may write (SIGXFSZ past it)
    open_files: int = 64  # RLIMIT_NOFILE
    output_bytes: int = 64 * 1024  # kept per stream (stdout, stderr): head and tail

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive number, not {value!r}")
            if f.name != "wall_s" and not isinstance(value, int):
                raise ValueError(f"Limits.{f.name} must be a whole number, not {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int  # the code's exit status; 128 + N when signal N ended it
    stdout: str
    stderr: str
    timed_out: bool  # killed at the wall-time limit
    truncated: bool  # a stream had more output than `limits.output_bytes` (the middle is cut)
    killed: str | None  # why it was stopped: wall_time, cpu_time, file_size, output, signal
    signal: int | None  # the signal that ended it, when one did
    duration_s: float
    limits: Limits = field(default_factory=Limits)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None

    def text(self) -> str:
        """The result as a model reads it: the exit code, what stopped the code and why,
        its output, and hints for the limits it most likely ran into."""
        lines = [f"exit code: {self.exit_code}"]
        if self.killed is not None:
            lines.append(f"killed: {self._why()}")
        if self.truncated:
            lines.append(f"output truncated: {self.limits.output_bytes} bytes kept per stream "
                         "(the middle is cut)")
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                lines.append(f"{name}:\n{text.rstrip()}")
        lines += [f"note: {n}" for n in self.notes()]
        return "\n".join(lines)

    def notes(self) -> list[str]:
        """Hints that name the limit behind a failure the code reported itself."""
        out = self.stdout + self.stderr
        lim = self.limits
        hints = [
            (("MemoryError", "Cannot allocate memory", "bad_alloc", "out of memory"),
             f"memory is limited to {lim.memory_mib} MiB of address space per process"),
            (("Resource temporarily unavailable", "fork: retry", "Cannot fork"),
             f"the sandbox may run at most {lim.processes} processes and threads"),
            (("Network is unreachable", "Connection refused", "Name or service not known",
              "Temporary failure in name resolution"),
             "the sandbox has no network (only its own loopback)"),
            (("Read-only file system",),
             "only /scratch (also mounted at /tmp and /dev/shm) is writable; it is wiped after "
             "each run"),
            (("Too many open files",), f"at most {lim.open_files} open files"),
            (("File too large", "File size limit exceeded"),
             f"files are limited to {lim.file_size_mib} MiB each"),
        ]
        return [note for needles, note in hints if any(n in out for n in needles)]

    def _why(self) -> str:
        lim = self.limits
        match self.killed:
            case "wall_time":
                return f"timeout: the wall-time limit of {lim.wall_s:g} s"
            case "cpu_time":
                return f"the CPU-time limit of {lim.cpu_s} s"
            case "file_size":
                return f"a file reached the file-size limit of {lim.file_size_mib} MiB"
            case "output":
                return (f"output flood: over {FLOOD_FACTOR * lim.output_bytes} bytes on one "
                        "stream")
        return f"signal {signal_name(self.signal)}"


def signal_name(number: int | None) -> str:
    try:
        return signal.Signals(number or 0).name
    except ValueError:
        return str(number)


class Capture:
    """One stream's output: the first half of `cap` bytes and the last half; `total` counts
    every byte seen."""

    def __init__(self, cap: int) -> None:
        self.head_size = cap - cap // 2
        self.tail_size = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_size - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.tail_size:
                del self.tail[:len(self.tail) - self.tail_size]

    @property
    def truncated(self) -> bool:
        return self.total > self.head_size + self.tail_size

    def text(self) -> str:
        if not self.truncated:
            return (self.head + self.tail).decode(errors="replace")
        cut = self.total - len(self.head) - len(self.tail)
        return (self.head.decode(errors="replace") + f"\n[... {cut} bytes cut ...]\n"
                + self.tail.decode(errors="replace"))
