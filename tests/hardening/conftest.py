"""Fixtures for the hardening suite (issue 11): a real `tlsfront serve` in front of the
recording backend, raw TLS clients, and short deadlines so the slow-client tests are quick.

`tests/proxy/helpers.py` (process and port helpers) is reused, not copied: its directory
goes on sys.path here.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "proxy"))

from helpers import Proc, free_ports, start_proxy  # noqa: E402

from recording_backend import RecordingBackend  # noqa: E402

HOST = "app.test"


@dataclass
class Front:
    """A running tlsfront and what the tests need to talk to it."""

    port: int
    admin_port: int
    proc: Proc
    dir: Path
    ca: Path

    def connect(self, timeout: float = 5.0) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    def error_log(self) -> str:
        p = self.dir / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""


def write_config(d: Path, pki, port: int, admin_port: int, backend_port: int, *,
                 timeouts: str = "", limits: str = "", server: str = "", tls: str = "") -> Path:
    """A one-vhost config: TLS on 127.0.0.1:`port`, X-SSL-* headers off (so what the
    backend receives is predictable byte for byte), extra TOML lines per section."""
    cfg = d / "tlsfront.toml"
    cfg.write_text(f"""
[server]
allow_root = true
workers = 1
error_log = "{d}/error.log"
access_log = "{d}/access.log"
shutdown_grace_seconds = 1
{server}

[admin]
listen = "127.0.0.1:{admin_port}"

[timeouts]
{timeouts}

[limits]
{limits}

[tls]
certificate = "{pki.server_cert}"
key = "{pki.server_key}"
chain = "{pki.intermediate_cert}"
{tls}

[[vhost]]
listen = "127.0.0.1:{port}"
server_name = "{HOST}"
tls = true
backends = ["http://127.0.0.1:{backend_port}"]
[vhost.forwarding]
tls_headers = false
""")
    return cfg


def start_front(tmp_path_factory, pki, name: str, backend_port: int, **sections) -> Front:
    d = tmp_path_factory.mktemp(name)
    port, admin_port = free_ports(2)
    cfg = write_config(d, pki, port, admin_port, backend_port, **sections)
    proc = start_proxy(d, cfg, [("127.0.0.1", port), ("127.0.0.1", admin_port)], name=name)
    wait_ready(admin_port, proc)
    return Front(port, admin_port, proc, d, pki.ca_cert)


def wait_ready(admin_port: int, proc: Proc, timeout: float = 20.0) -> None:
    """Until every worker runs (the master binds before forking: a listening port alone
    does not mean a worker accepts yet, and connections would wait in the backlog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2) as r:
                state = json.loads(r.read())
            workers = state.get("workers", {})
            if state.get("ready") and workers.get("ready", 0) >= workers.get("configured", 1):
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()}")
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name} not ready after {timeout}s:\n{proc.output()}")


@pytest.fixture(scope="module")
def recorder():
    backend = RecordingBackend()
    backend.port = backend.start()
    yield backend
    backend.stop()
