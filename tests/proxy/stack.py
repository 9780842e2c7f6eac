"""A running `tlsfront serve` for end-to-end tests: config snippets, start, wait until ready, load.

The pieces several test files had their own copies of:

- `ADMIN_TLS_ONE_VHOST`: the ``[admin]`` listener, the ``[tls]`` defaults from the `pki` fixture and one
  TLS vhost ``localhost`` on ``127.0.0.1:{p_tls}`` in front of ``127.0.0.1:{b}``; a test's own ``[server]``
  section goes before it (placeholders: ``{d}``, ``{pki}``, ``{p_admin}``, ``{p_tls}``, ``{b}``);
  `TLS_DEFAULTS` is the ``[tls]`` section alone, `ONE_WORKER_SERVER` a ``[server]`` with one worker;
- `start_stack`: leased ports, the demo backend, the config file, `tlsfront serve`, and a wait until
  every worker is ready (``/readyz`` answers 200 as soon as ONE worker is ready, so the wait reads
  the worker count, not the status);
- `Stack`: /readyz, /metrics (`Stack.metric`, `Stack.settled_metric`), the error log, `Stack.wait`;
- `Load`: sequential HTTPS requests from one source address in a thread.

Example::

    stack = start_stack(pki, tmp_path, SERVER + ADMIN_TLS_ONE_VHOST, workers=2)
    with Load(stack) as load:
        stack.wait(lambda: len(load.results) >= 10, "10 requests")
    stack.stop()
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from helpers import Proc, free_ports, read_response, start_backend, start_proxy

TLS_DEFAULTS = """
[tls]
certificate = "{pki.server_cert}"
key = "{pki.server_key}"
chain = "{pki.intermediate_cert}"
"""

# [server] of the single-worker fronts (quirks, redirects): one worker keeps the wire order exact.
ONE_WORKER_SERVER = """
[server]
allow_root = true  # CI runs as root; serving as root is refused otherwise
workers = 1
error_log = "{d}/error.log"
access_log = "{d}/access.log"
shutdown_grace_seconds = 2
"""

ADMIN_TLS_ONE_VHOST = """
[admin]
listen = "127.0.0.1:{p_admin}"
""" + TLS_DEFAULTS + """
[[vhost]]
listen = "127.0.0.1:{p_tls}"
server_name = "localhost"
tls = true
backends = ["http://127.0.0.1:{b}"]
"""

# Workers write their metric snapshot for the master every second (tlsfront.worker).
SNAPSHOT_INTERVAL_SECONDS = 1.0


@dataclass
class Stack:
    dir: Path
    pki: object
    ports: dict
    proxy: Proc
    config: Path
    backend: Proc | None = None

    def admin(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['p_admin']}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:  # /readyz: 503 until a worker is ready
            return exc.code, exc.read()

    def ready(self) -> dict:
        return json.loads(self.admin("/readyz")[1])

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""

    def wait(self, predicate, what: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; error log:\n{self.error_log()[-3000:]}")

    def metric(self, name: str) -> float:
        text = self.admin("/metrics")[1].decode()
        m = re.search(rf"^{re.escape(name)} ([\d.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def settled_metric(self, name: str, timeout: float = 20.0) -> float:
        """`metric(name)` once the workers' snapshots have caught up with what already happened.

        The master's /metrics sums the workers' last snapshots, written every second: a read right
        after some traffic can miss the last second of it. Was: a fixed `time.sleep(1.2)`, too short
        when a loaded machine delays a worker's timer. Here: the value must stay the same over more
        than two snapshot intervals.
        """
        quiet = 2 * SNAPSHOT_INTERVAL_SECONDS + 0.5
        deadline = time.monotonic() + timeout
        value, since = self.metric(name), time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} still changing after {timeout}s (now {value})")
            time.sleep(0.1)
            now = self.metric(name)
            if now != value:
                value, since = now, time.monotonic()
        return value

    def stop(self, timeout: float = 30) -> int:
        """Stop tlsfront (SIGTERM) and the backend; the exit status of tlsfront. No traceback allowed."""
        code = self.proxy.stop(timeout=timeout)
        if self.backend is not None:
            self.backend.stop()
        assert "Traceback" not in self.proxy.output(), self.proxy.output()
        return code


def start_stack(pki, d: Path, template: str, workers: int | None = None, log_dir: Path | None = None,
                record: Path | None = None, **fmt) -> Stack:
    """Ports p_tls, p_admin and b, the demo backend on b (requests appended to `record`), `template`
    formatted with d, pki, the ports, workers and `fmt` into d/tlsfront.toml, `tlsfront serve`; then
    waits until `workers` workers (if given) are ready. Process output goes to `log_dir` (default d)."""
    log_dir = log_dir or d
    ports = dict(zip(["p_tls", "p_admin", "b"], free_ports(3)))
    backend = start_backend(log_dir, ports["b"], name="backend", record=record)
    cfg = d / "tlsfront.toml"
    cfg.write_text(template.format(d=d, pki=pki, workers=workers, **ports, **fmt))
    try:
        proxy = start_proxy(log_dir, cfg, [("127.0.0.1", ports["p_tls"]), ("127.0.0.1", ports["p_admin"])])
    except Exception:
        backend.stop()
        raise
    stack = Stack(d, pki, ports, proxy, cfg, backend)
    if workers is not None:
        try:
            stack.wait(lambda: stack.ready()["workers"]["ready"] == workers, f"{workers} workers ready")
        except Exception:
            stack.stop()
            raise
    return stack


@dataclass
class Load:
    """Sequential HTTPS requests, one connection each (what curl does), from one source."""

    stack: Stack
    path: str = "/load"
    source: str = "127.0.0.1"
    results: list = field(default_factory=list)  # (start, end, error or None)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.ctx = ssl.create_default_context(cafile=str(self.stack.pki.ca_cert))
        self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # cheap resumptions keep the CPU for the test
        self.session = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.stack.ports["p_tls"]), timeout=15,
                                       source_address=(self.source, 0))
        with self.ctx.wrap_socket(raw, server_hostname="localhost", session=self.session) as s:
            s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            status, _v, _h, _body = read_response(s)
            self.session = s.session
            if status != 200:
                raise RuntimeError(f"status {status}")

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                self.one()
                self.results.append((start, time.monotonic(), None))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.results.append((start, time.monotonic(), f"{type(exc).__name__}: {exc}"))
                self.session = None

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)

    @property
    def failures(self) -> list:
        return [r for r in self.results if r[2] is not None]


def children(pid: int) -> list[int]:
    """Pids of the direct children of `pid` (from /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
    return out
