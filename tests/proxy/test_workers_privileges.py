"""Started as root with `user = "nobody"`: the master keeps root (to bind, to read keys on
reload), the workers switch to nobody right after fork(), before the reactor.

Checks: worker credentials in /proc, requests served, metrics summed (workers can write
the snapshot directory), SIGUSR1 after a rotation (the master creates the new files and
chowns them, the workers reopen them as nobody), and workers exiting when the master is
killed with SIGKILL (parent-death signal, set after the credentials change).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import tempfile
import urllib.request
from pathlib import Path

import pytest

from helpers import free_ports, read_response, start_backend, start_proxy, wait_until
from stack import ADMIN_TLS_ONE_VHOST

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users (CI runs as root)")

CONFIG = """
[server]
error_log = "{d}/error.log"
access_log = "{d}/access.log"
pid_file = "{d}/tlsfront.pid"
workers = 2
user = "nobody"
shutdown_grace_seconds = 2
""" + ADMIN_TLS_ONE_VHOST


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise KeyError("Uid")


def _readyz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 503 until the workers are ready
        return json.loads(exc.read())


def _request(pki, port: int, path: str) -> int:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        return read_response(s)[0]


def _wait(predicate, what: str, timeout: float = 15.0):
    return wait_until(predicate, what, timeout)


def test_workers_run_as_nobody_and_die_with_the_master(pki, tmp_path):
    nobody = pwd.getpwnam("nobody").pw_uid
    d = Path(tempfile.mkdtemp(prefix="tlsfront-priv-"))  # world-searchable, unlike pytest's tmp
    d.chmod(0o755)
    ports = dict(zip(["p_tls", "p_admin", "b"], free_ports(3)))
    backend = start_backend(tmp_path, ports["b"], name="backend")
    cfg = d / "t.toml"
    cfg.write_text(CONFIG.format(d=d, pki=pki, **ports))
    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", ports["p_tls"]), ("127.0.0.1", ports["p_admin"])])
    try:
        state = _wait(lambda: (s := _readyz(ports["p_admin"]))["workers"]["ready"] == 2 and s, "workers")
        pids = state["workers"]["pids"]
        assert _uid(proxy.pid) == 0
        assert [_uid(p) for p in pids] == [nobody, nobody]
        assert _request(pki, ports["p_tls"], "/as-nobody") == 200
        assert (d / "access.log").stat().st_uid == nobody  # chowned by the master

        def counted() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['p_admin']}/metrics", timeout=5) as r:
                text = r.read().decode()
            return f'tlsfront_http_requests_total{{code="2xx",vhost="localhost:{ports["p_tls"]}"}} 1.0' in text
        _wait(counted, "the worker's snapshot summed on /metrics")

        (d / "access.log").rename(d / "access.log.1")
        os.kill(proxy.pid, signal.SIGUSR1)
        _wait(lambda: (d / "access.log").exists(), "the new access log")
        # The workers reopen after the master; each process's reopened error log starts with
        # TLSF0008 (was: a fixed 0.3 s, after which a loaded machine's workers had not always).
        _wait(lambda: (d / "error.log").read_text().count("TLSF0008") >= 3, "TLSF0008 from master and 2 workers")
        assert _request(pki, ports["p_tls"], "/after-rotation") == 200
        _wait(lambda: "/after-rotation" in (d / "access.log").read_text(), "the line in the new file")
        assert (d / "access.log").stat().st_uid == nobody

        os.kill(proxy.pid, signal.SIGKILL)
        _wait(lambda: not any(Path(f"/proc/{p}").exists() and "Z" not in
                              Path(f"/proc/{p}/stat").read_text().split(")")[1][:3] for p in pids),
              "the workers to exit after the master died")
    finally:
        proxy.stop()
        backend.stop()
        shutil.rmtree(d, ignore_errors=True)
