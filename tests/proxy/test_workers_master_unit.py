"""The master's pure parts, without forking: back-off, exit statuses, the admin responder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlsfront import master
from tlsfront.metrics import Metrics
from tlsfront.model import Address, AdminSettings, Backend, Config, ServerSettings, TLSSettings, VHost


def _config(workers: int = 3) -> Config:
    v = VHost(0, "www.example.test", Address("127.0.0.1", 8443), TLSSettings(),
              (Backend("http://127.0.0.1:8081", "127.0.0.1", 8081),))
    return Config(Path("t.toml"), ServerSettings(workers=workers), AdminSettings(), TLSSettings(), (v,))


def test_backoff_doubles_while_workers_die_young_and_resets_after_a_stable_run():
    m = master.Master(_config())
    key = ("worker", 0)
    young = [m._backoff(key, lived=0.5) for _ in range(10)]
    assert young[:5] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert young[-1] == master.BACKOFF_MAX_SECONDS
    assert m._backoff(key, lived=master.STABLE_SECONDS) == master.BACKOFF_FIRST_SECONDS
    assert m._backoff(("worker", 1), lived=0.1) == master.BACKOFF_FIRST_SECONDS  # per slot


@pytest.mark.parametrize("code, expected", [
    ("import os; os._exit(3)", "exit status 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "killed by SIGSEGV"),
])
def test_describe_status(code, expected):
    pid = os.spawnv(os.P_NOWAIT, sys.executable, [sys.executable, "-c", code])
    _pid, status = os.waitpid(pid, 0)
    assert master.describe_status(status) == expected


def test_worker_count_default_is_the_cpu_count():
    assert master.worker_count(_config(0)) == (os.cpu_count() or 1)
    assert master.worker_count(_config(3)) == 3


@pytest.fixture
def responder(tmp_path):
    cfg = _config()
    m = master.Master(cfg)
    m.snapshot_dir = tmp_path
    m.metrics = Metrics(cfg.vhosts, build={"version": "test"})
    m._build_registry()
    m.gen = master.Generation(1, cfg, {}, {}, logs=None, workers=3, loader=None)
    return m


def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def test_admin_metrics_text_and_openmetrics(responder):
    status, headers, body = _split(responder._admin_response(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert int(headers["Content-Length"]) == len(body)
    assert b'tlsfront_tls_resumptions_total{vhost="www.example.test:8443"} 0.0' in body
    _s, headers, body = _split(responder._admin_response(
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n"))
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_admin_metrics_add_worker_snapshots(responder, tmp_path):
    worker = Metrics(responder.gen.config.vhosts, build={})
    worker.handshake_ok("www.example.test:8443", "TLSv1.3", "TLS_AES_128_GCM_SHA256", True, 0.001)
    (tmp_path / f"worker-{os.getpid()}.json").write_text(json.dumps(worker.snapshot()))
    responder.children[os.getpid()] = master.Child(os.getpid(), "worker", 0, 1, 0.0, ready=True)
    _s, _h, body = _split(responder._admin_response(b"GET /metrics HTTP/1.0\r\n\r\n"))
    assert b'tlsfront_tls_resumptions_total{vhost="www.example.test:8443"} 1.0' in body
    # The worker dies: its counters are folded into the master and its file removed.
    responder.children.clear()
    responder._retire_snapshot(os.getpid())
    assert not list(tmp_path.glob("worker-*.json"))
    _s, _h, body = _split(responder._admin_response(b"GET /metrics HTTP/1.0\r\n\r\n"))
    assert b'tlsfront_tls_resumptions_total{vhost="www.example.test:8443"} 1.0' in body


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /healthz HTTP/1.1\r\n\r\n", "200 OK"),
    (b"GET /readyz HTTP/1.1\r\n\r\n", "503 Service Unavailable"),  # no worker ready
    (b"GET /nope HTTP/1.1\r\n\r\n", "404 Not Found"),
    (b"POST /metrics HTTP/1.1\r\n\r\n", "405 Method Not Allowed"),
    (b"garbage\r\n\r\n", "400 Bad Request"),
    (b"GET /healthz?x=1 HTTP/1.1\n\n", "200 OK"),  # bare LF, query ignored
], ids=["healthz", "readyz-not-ready", "404", "405", "400", "lf-query"])
def test_admin_routes(responder, request_bytes, status):
    line, headers, body = _split(responder._admin_response(request_bytes))
    assert line == f"HTTP/1.1 {status}"
    assert headers["Connection"] == "close"


def test_admin_head_has_no_body(responder):
    _line, headers, body = _split(responder._admin_response(b"HEAD /healthz HTTP/1.1\r\n\r\n"))
    assert body == b"" and int(headers["Content-Length"]) > 0


def test_master_never_imports_the_reactor():
    """Importing master (and everything it imports before fork) must not install a reactor."""
    code = ("import sys, tlsfront.master, tlsfront.affinity, tlsfront.worker, tlsfront.serve, "
            "tlsfront.metrics, tlsfront.admin, tlsfront.tlsctx, tlsfront.logfiles, tlsfront.config; "
            "print('twisted.internet.reactor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fork_failure_is_retried_not_fatal(responder, monkeypatch, tmp_path):
    """fork() failing (EAGAIN under a process limit) schedules a retry with back-off."""
    from tlsfront.logfiles import Logs

    responder.gen.logs = Logs(error_log=tmp_path / "error.log")

    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    responder._fork_worker(responder.gen, 1)
    assert ("worker", 1) in responder.restarts
    assert responder.gen.slots[1] is None
    log = (tmp_path / "error.log").read_text()
    assert "TLSF0010: worker 1/1 (pid -) exited: fork() failed: Resource temporarily unavailable; restarting in 0.25s" in log
