"""What the benches read of a process from /proc."""

from __future__ import annotations

import os
from collections.abc import Iterator


def _processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command) of every process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                yield int(entry), f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) of a process and its child processes so far:
    on a shared machine the CPU a message costs is steadier than the wall-clock rate."""
    # fields[1]: the parent's pid
    return sum(_cpu(f) for p, f in _processes() if p == pid or int(f[1]) == pid)


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) of each thread of a process so far, by thread name (the
    names of threads that share one are summed): which thread a load binds."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        out[name] = out.get(name, 0.0) + _cpu(rest.split())
    return out


def child_cpu_seconds(pid: int, marker: bytes) -> float:
    """CPU time (user + system) so far of the child processes of ``pid`` whose command
    line holds ``marker`` (e.g. the rules' delivery process: ``b"rules.worker"``)."""
    total = 0.0
    for p, fields in _processes():
        if int(fields[1]) != pid:
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if marker in f.read():
                    total += _cpu(fields)
        except OSError:
            continue
    return total


def disk_writes(pid: int) -> int:
    """Bytes a process has made the kernel write to storage so far (``write_bytes`` of
    /proc/PID/io: its database, WAL and checkpoints)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes"):
                return int(line.split()[1])
    return 0
