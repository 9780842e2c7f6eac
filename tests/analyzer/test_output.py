"""Outputs: JSON shape of issue 3, Prometheus exposition (parsed back, promtool), table, catalog; tlsfront's own
lines (written by tlsfront.logformat) come back as the right categories."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tlslog.catalog import CATALOG, CATEGORIES
from tlslog.cli import main
from tlslog.prometheus import render_prometheus
from tlslog.scan import ScanOptions, scan
from tlslog.store import Store

AP = "[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] "
LOG = (
    AP + "[client 127.0.0.1:5] AH02008: SSL library error 1 in handshake (server www.example.com:443)\n"
    + AP + "SSL Library Error: error:0A000418:SSL routines::tlsv1 alert unknown ca (SSL alert number 48)\n"
    + "[Fri Nov 27 10:51:00.000000 2026] [ssl:info] [pid 1:tid 3] [client 127.0.0.1:6] AH01996: SSL handshake "
      "failed: HTTP spoken on HTTPS port; trying to send HTML error page\n"
)
SSLREQ = ('[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.3 TLS_AES_128_GCM_SHA256 "GET / HTTP/1.1" 512\n'
          '[27/Nov/2026:09:03:00 +0000] 10.0.0.2 TLSv1 ECDHE-RSA-RC4-SHA "GET / HTTP/1.1" 512\n')


@pytest.fixture
def logs(tmp_path):
    (tmp_path / "error_log").write_text(LOG)
    (tmp_path / "ssl_request_log").write_text(SSLREQ)
    return tmp_path


def test_json_shape(logs, capsys):
    assert main(["scan", "--format", "json", "--timezone", "UTC", str(logs)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["events", "lines", "unparsed_lines", "files", "protocols", "status"]
    assert list(out["events"]) == list(CATEGORIES)
    assert out["events"]["client_rejected_cert"] == 1 and out["events"]["plain_http_on_tls_port"] == 1
    assert sum(out["events"].values()) == 2
    assert out["lines"] == 5 and out["unparsed_lines"] == 0
    assert out["protocols"] == {"-": {"protocols": {"TLSv1": 1, "TLSv1.3": 1},
                                      "ciphers": {"ECDHE-RSA-RC4-SHA": 1, "TLS_AES_128_GCM_SHA256": 1}}}
    assert [f["format"] for f in out["files"]] == ["apache_error", "ssl_request"]


def test_prometheus_parses_and_preinitialises_every_category(logs):
    text = render_prometheus(scan(ScanOptions([str(logs)], tz="UTC")).store)
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    for cat in CATEGORIES:
        assert ("tlslog_events_total", (("category", cat), ("source", "apache"), ("vhost", ""))) in samples or \
            ("tlslog_events_total", (("category", cat), ("source", "apache"), ("vhost", "www.example.com:443"))) \
            in samples
    assert samples[("tlslog_events_total", (("category", "client_rejected_cert"), ("source", "apache"),
                                            ("vhost", "www.example.com:443")))] == 1
    assert samples[("tlslog_lines_total", (("source", "apache"),))] == 3
    assert samples[("tlslog_tls_requests_total", (("protocol", "TLSv1"), ("vhost", "-")))] == 1
    assert samples[("tlslog_last_event_timestamp_seconds", (("category", "plain_http_on_tls_port"),))] == \
        pytest.approx(1795776660.0)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (tests/install-sysdeps.sh)")
def test_promtool_accepts_the_exposition(logs):
    text = render_prometheus(scan(ScanOptions([str(logs)], tz="UTC")).store)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_vhost_label_is_bounded():
    s = Store()
    for i in range(10):
        for _ in range(i + 1):
            s.add_event("no_shared_cipher", "apache", f"v{i}:443", 1.0, (0, i), b"x")
    text = render_prometheus(s, max_vhosts=3)
    vhosts = {line.split('vhost="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith('tlslog_events_total{category="no_shared_cipher"')}
    assert vhosts == {"v9:443", "v8:443", "v7:443", "other", ""}
    assert 'vhost="other"} 28' in text  # 1+2+...+7


def test_table_names_count_remedy_and_example(logs, capsys):
    assert main(["scan", "--format", "table", "--timezone", "UTC", str(logs)]) == 0
    out = capsys.readouterr().out
    assert "client_rejected_cert" in out and CATALOG["client_rejected_cert"].remedy[:40] in out
    assert "2026-11-27 10:50:52 UTC" in out and "AH02008" in out
    assert "TLSv1 1" in out


def test_catalog_lists_every_category(capsys):
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    for cat in CATEGORIES:
        assert f"\n{cat}\n" in "\n" + out
        assert CATALOG[cat].remedy in out


def test_tlsfront_lines_round_trip(tmp_path):
    """What tlsfront writes (tlsfront.logformat, docs/logs.md), tlslog classifies."""
    logformat = pytest.importorskip("tlsfront.logformat")
    f = logformat.ErrorLogFormatter(pid=4242)
    when = 1795766579.0
    peer = ("127.0.0.1", 50000)
    vhost = "www.example.test:443"
    lines = [
        f.format("startup", when, version="0.1.0", versions="x"),
        f.format("handshake_failed", when, peer, vhost=vhost, reason="no_shared_cipher", alert="-",
                 openssl="SSL routines::no shared cipher"),
        f.format("handshake_failed", when, peer, vhost=vhost, reason="client_rejected_cert", alert="unknown_ca",
                 openssl="SSL routines::tlsv1 alert unknown ca"),
        f.format("handshake_failed", when, peer, vhost=vhost, reason="unsupported_protocol", alert="-",
                 openssl="SSL routines::unsupported protocol"),
        f.format("handshake_eof", when, peer, vhost=vhost, detail="connection closed"),
        f.format("handshake_timeout", when, peer, vhost=vhost, seconds="10.0"),
        f.format("plain_http", when, peer, vhost=vhost, request_line="GET / HTTP/1.1"),
        f.format("backend_refused", when, peer, backend="127.0.0.1:8081", vhost=vhost, detail="Connection refused",
                 status=502),
        f.format("backend_timeout", when, peer, backend="127.0.0.1:8081", vhost=vhost, seconds="30", phase="headers",
                 status=504),
        f.format("backend_down", when, backend="127.0.0.1:8081", vhost=vhost, seconds="10"),
    ]
    log = tmp_path / "tlsfront_error.log"
    log.write_text("".join(lines))
    result = scan(ScanOptions([str(log)], tz="UTC"))
    got = {k: v for k, v in result.store.category_totals().items() if v}
    assert got == {"no_shared_cipher": 1, "client_rejected_cert": 1, "protocol_mismatch": 1,
                   "handshake_eof_or_reset": 1, "handshake_timeout": 1, "plain_http_on_tls_port": 1,
                   "backend_unavailable": 1, "backend_timeout": 1}
    assert result.files[0].format == "tlsfront_error" and result.files[0].unparsed_lines == 0
    assert ("client_rejected_cert", "tlsfront", vhost) in result.store.events
