"""TCP ports for test servers that several processes start at the same time, without races.

The old helpers bound port 0, read the port, closed the socket and let a child process bind
it later. Between the close and the child's bind the port is free for anyone: the kernel
hands ports of `ip_local_port_range` to every other ``bind(("", 0))`` and ``connect()`` on
the machine (other engineers' test runs, this run's own clients), and another copy of the
same helper could pick it too. A lost race showed up as a server that exited with "address
in use", or a "dead" backend port that suddenly answered.

Here a port is taken

* from *below* the ephemeral range, which the kernel never gives to ``bind(0)`` or
  ``connect()``: only a process that names the port can take it, and
* with a lease: a file ``<port>`` created with ``O_EXCL`` in a directory every test process
  shares (``$TLSFRONT_TEST_PORT_DIR``, default ``/tmp/tlsfront-test-ports``), holding the
  pid of the test process. A lease is given back when that process exits (atexit); a lease
  whose pid is gone, or older than `LEASE_MAX_AGE_SECONDS`, is stale and may be taken over.
  Allocation runs under an ``flock`` of ``.lock`` there, so a stale lease is not taken by two.

A candidate must also be bindable right now (a fixed-port service may sit there).

Example::

    from ports import free_port, free_ports
    p_tls, p_admin = free_ports(2)
"""

from __future__ import annotations

import atexit
import fcntl
import os
import random
import socket
import time
from pathlib import Path

LEASE_DIR = Path(os.environ.get("TLSFRONT_TEST_PORT_DIR", "/tmp/tlsfront-test-ports"))
LEASE_MAX_AGE_SECONDS = 6 * 3600  # a pytest run is minutes; a pid reused for hours is not one
SPAN = 12000  # ports taken from [ephemeral_low - SPAN, ephemeral_low)

_mine: set[int] = set()


def _range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return max(1024, low - SPAN), low - 1


def _stale(path: Path) -> bool:
    try:
        pid = int(path.read_text() or "0")
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return True
    if age > LEASE_MAX_AGE_SECONDS or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _bindable(port: int, hosts: tuple[str, ...]) -> bool:
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _lease(port: int) -> bool:
    path = LEASE_DIR / str(port)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not _stale(path):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        _mine.add(port)
        return True
    return False


def free_ports(n: int, hosts: tuple[str, ...] = ("127.0.0.1",)) -> list[int]:
    """`n` distinct ports, leased to this process, bindable on every one of `hosts` now."""
    LEASE_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
    low, high = _range()
    out: list[int] = []
    with open(LEASE_DIR / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for _ in range(20 * n + 200):
                if len(out) == n:
                    break
                port = random.randint(low, high)
                if port in out or port in _mine:
                    continue
                if _bindable(port, hosts) and _lease(port):
                    out.append(port)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if len(out) < n:
        raise RuntimeError(f"could not lease {n} free TCP ports in {low}-{high} on {hosts} "
                           f"(leases in {LEASE_DIR}); got {out}")
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """One leased port free on `host` now (see the module docstring)."""
    return free_ports(1, (host,))[0]


@atexit.register
def _release() -> None:
    for port in list(_mine):
        path = LEASE_DIR / str(port)
        try:
            if path.read_text() == str(os.getpid()):
                path.unlink()
        except OSError:
            pass
    _mine.clear()
