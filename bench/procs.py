"""Process trees from /proc: CPU seconds, peak RSS; free ports; starting pinned processes.

Why /proc and not `time`: the fronts run as daemons with worker processes that
live for the whole trial, so their CPU is read from /proc/PID/stat (utime+stime,
fields 14 and 15, in clock ticks) of every process in the tree, before and after
the load run. Peak RSS is VmHWM from /proc/PID/status (the kernel's high-water mark).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # the process exited between listing and reading
        return None


def children_map() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} for every process on the machine (one pass over /proc)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        # the command name (field 2) may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants alive now."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process, in seconds (0.0 if it is gone)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    # after the ')' field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of one process in bytes (0 if it is gone)."""
    status = _read(f"/proc/{pid}/status") or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class TreeSample:
    """CPU seconds per process of a tree at one instant."""

    per_pid: dict[int, float]

    @property
    def total(self) -> float:
        return sum(self.per_pid.values())


def sample(pid: int) -> TreeSample:
    return TreeSample({p: cpu_seconds(p) for p in tree(pid)})


def cpu_delta(before: TreeSample, after: TreeSample) -> float:
    """CPU seconds spent by the tree between two samples.

    A process that appeared in between counts from zero; one that vanished is
    lost (it cannot be read any more), which a benchmark front should not do.
    """
    return sum(t - before.per_pid.get(p, 0.0) for p, t in after.per_pid.items())


def tree_rss(pid: int) -> tuple[int, int]:
    """(largest VmHWM of one process, sum of VmHWM) over the tree, in bytes."""
    values = [peak_rss_bytes(p) for p in tree(pid)]
    return (max(values, default=0), sum(values))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout_seconds: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts TCP connections on host:port.

    Raises RuntimeError naming the address (and the exit code, when `proc` died first).
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]!s} exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout_seconds:.0f} s")


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """Prefix `argv` with `taskset -c CPUS` (children inherit the affinity)."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_seconds: float = 10.0) -> None:
    """Stop a process we started and everything it forked (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def start(argv: list[str], log_path: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start `argv` in its own process group (so `stop` reaches its workers), output to `log_path`."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True,
        )
    finally:
        log.close()
