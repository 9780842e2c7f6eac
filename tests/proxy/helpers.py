"""Process and port helpers for end-to-end tests: real processes, real sockets, 127.x only."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
TLSFRONT = str(VENV_BIN / "tlsfront")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (bind port 0, read it, close)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n: int, hosts: tuple[str, ...] = ("127.0.0.1",)) -> list[int]:
    """n ports free on every one of `hosts` (for vhosts sharing a port on several addresses)."""
    out: list[int] = []
    while len(out) < n:
        p = free_port(hosts[0])
        try:
            for h in hosts[1:]:
                with socket.socket() as s:
                    s.bind((h, p))
        except OSError:
            continue
        if p not in out:
            out.append(p)
    return out


def wait_listening(host: str, port: int, proc: "Proc | None" = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s"
                       + (f"; {proc.name} said:\n{proc.output()}" if proc else ""))


_LIVE: set["Proc"] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Children a failed fixture set-up never stopped: stop them (by pid) when pytest exits."""
    for proc in list(_LIVE):
        proc.stop(timeout=5)


class Proc:
    """A child process whose output goes to a file; stopped by its pid only."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.out"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=env or os.environ.copy())
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def status_kib(self, field: str) -> int:
        """A field of /proc/PID/status in KiB (VmRSS now, VmHWM peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self, timeout: float = 10.0) -> int:
        _LIVE.discard(self)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def start_backend(log_dir: Path, port: int, host: str = "127.0.0.1", name: str | None = None,
                  record: Path | None = None) -> Proc:
    """The demo echo backend; with `record`, every request it receives is appended there."""
    argv = [sys.executable, "-m", "tlsfront.demo_backend", str(port), host]
    if record is not None:
        argv.append(str(record))
    proc = Proc(name or f"backend-{port}", argv, log_dir)
    try:
        wait_listening(host, port, proc)
    except Exception:
        proc.stop()
        raise
    return proc


def start_proxy(log_dir: Path, config_path: Path, wait_for: list[tuple[str, int]],
                name: str = "tlsfront") -> Proc:
    proc = Proc(name, [TLSFRONT, "serve", "-c", str(config_path)], log_dir)
    try:
        for host, port in wait_for:
            wait_listening(host, port, proc)
    except Exception:
        proc.stop()
        raise
    return proc


def client_context(cafile: Path | None = None, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


_STREAMS: dict[int, tuple[object, object, list]] = {}


def read_response(sock, method: bytes = b"GET") -> tuple[int, bytes, dict[bytes, bytes], bytes]:
    """Read one response from a blocking socket with tlsfront's own parser: (status, version, headers, body).

    Bytes of the next response that arrive with this one are kept for the next call
    on the same socket (pipelined answers often share a read).
    """
    from tlsfront.http1 import END, ResponseReader

    state = _STREAMS.get(id(sock))
    if state is None or state[0] is not sock:
        state = (sock, ResponseReader(), [])
        _STREAMS[id(sock)] = state
    _, reader, pending = state
    if not pending:
        reader.expect(method)
    head = None
    body = bytearray()

    def take() -> bool:
        nonlocal head
        while pending:
            ev = pending.pop(0)
            if ev is END:
                return True
            if type(ev) is bytes:
                body.extend(ev)
            else:
                head = ev
        return False

    done = take()
    while not done:
        data = sock.recv(65536)
        if not data:
            if head is not None and head.until_close:
                break
            raise ConnectionError(f"connection closed after {len(body)} body bytes")
        pending.extend(reader.feed(data))
        done = take()
    if method == b"HEAD":  # the parser stops after a HEAD answer: a fresh one for the next
        _STREAMS.pop(id(sock), None)
    headers = {n.lower(): v for n, v in head.headers}
    return head.status, head.version, headers, bytes(body)


def echo_lines(body: bytes) -> dict[str, list[str]]:
    """The demo backend's echo: header name (lower) -> values, plus the request line under ''."""
    lines = body.decode("latin-1").splitlines()
    out: dict[str, list[str]] = {"": [lines[0]]}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        out.setdefault(name.lower(), []).append(value)
    return out
