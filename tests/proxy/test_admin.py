"""admin: a real admin listener (its own process and reactor) probed with curl, promtool and Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tlsfront import admin

CURL = shutil.which("curl")
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

# The server: a Metrics store with known events behind the admin Site.
SERVER = textwrap.dedent('''
    import sys
    from prometheus_client import CollectorRegistry
    from twisted.internet import reactor
    from tlsfront import admin, tlserrors
    from tlsfront.metrics import Metrics
    from tlsfront.model import Address, Backend, VHost, TLSSettings

    ready = sys.argv[1] == "ready"
    be = (Backend("http://127.0.0.1:8081", "127.0.0.1", 8081),)
    vh = VHost(0, "www.example.test", Address("127.0.0.1", 8443), TLSSettings(), be)
    m = Metrics([vh])
    m.handshake_ok(vh.label, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", resumed=False, seconds=0.003)
    m.handshake_ok(vh.label, "TLSv1.3", "TLS_AES_128_GCM_SHA256", resumed=True, seconds=0.001)
    for _ in range(3):
        m.handshake_failed(vh.label, tlserrors.classify_errors([("SSL routines", "", "no shared cipher")]))
    m.handshake_failed(vh.label, tlserrors.plain_http())
    m.request_done(vh.label, 200, 0.01, 100, 1000)
    m.backend_error(vh.label, "127.0.0.1:8081", "refused")
    m.backend_up(vh.label, "127.0.0.1:8081", False)
    registry = CollectorRegistry()
    registry.register(m.collector())

    def readiness():
        return admin.Readiness(
            (admin.ListenerState("127.0.0.1:8443", vh.label, ready),),
            (admin.BackendState(vh.label, "127.0.0.1:8081", False),))

    port = admin.listen_admin(reactor, "127.0.0.1", 0, admin.make_site(registry, readiness))
    print(port.getHost().port, flush=True)
    reactor.run()
''')


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    script = tmp_path_factory.mktemp("admin") / "admin_server.py"
    script.write_text(SERVER)
    procs, ports = [], {}
    try:
        for mode in ("ready", "unready"):
            p = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True)
            procs.append(p)
            ports[mode] = int(p.stdout.readline())
        yield ports
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
            p.stdout.close()


def _curl(port: int, path: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    out = subprocess.run([CURL, "-s", "-D", "-", *args, f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, timeout=20, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return int(lines[0].split()[1]), headers, body


pytestmark = pytest.mark.skipif(CURL is None, reason="LOUD: curl is not installed")


def test_metrics_text_format(servers) -> None:
    status, headers, body = _curl(servers["ready"], "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert ('tlsfront_tls_handshake_failures_total{alert="none",reason="no_shared_cipher",'
            'vhost="www.example.test:8443"} 3.0') in text
    assert 'tlsfront_backend_up{backend="127.0.0.1:8081",vhost="www.example.test:8443"} 0.0' in text
    if PROMTOOL:
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert r.returncode == 0 and not r.stdout and not r.stderr, (r.stdout, r.stderr)


def test_metrics_openmetrics_when_asked(servers) -> None:
    status, headers, body = _curl(servers["ready"], "/metrics", "-H",
                                  "Accept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"# TYPE tlsfront_tls_handshakes counter" in body


def test_healthz_and_readyz(servers) -> None:
    status, headers, body = _curl(servers["ready"], "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, headers, body = _curl(servers["ready"], "/readyz")
    doc = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert doc["ready"] is True
    assert doc["listeners"] == [{"address": "127.0.0.1:8443", "vhost": "www.example.test:8443", "bound": True}]
    assert doc["backends"] == [{"vhost": "www.example.test:8443", "backend": "127.0.0.1:8081", "up": False}]
    status, _, body = _curl(servers["unready"], "/readyz")
    assert status == 503 and json.loads(body)["ready"] is False
    status, _, _ = _curl(servers["ready"], "/readyz", "-I")  # HEAD
    assert status == 200


def test_unknown_path_and_method(servers) -> None:
    status, _, body = _curl(servers["ready"], "/secret")
    assert status == 404 and b"/metrics, /healthz, /readyz" in body
    status, _, _ = _curl(servers["ready"], "/metrics", "-X", "POST")
    assert status == 405


def test_import_installs_no_reactor() -> None:
    code = "import sys, tlsfront.admin, tlsfront.metrics; print('twisted.internet.reactor' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_admin_address_must_not_be_a_vhost() -> None:
    assert admin.check_address("127.0.0.1", 9180, [("127.0.0.1", 8443, "vhost[0]")]) is None
    msg = admin.check_address("127.0.0.1", 8443, [("*", 8443, "vhost[1]")])
    assert msg and "vhost[1]" in msg and "never be served on a public vhost" in msg


from ports import free_port as _free_port  # noqa: E402  - leased (tests/ports.py)


@pytest.mark.skipif(PROMETHEUS is None, reason="LOUD: prometheus is not installed")
def test_real_prometheus_scrapes_the_exact_counts(servers, tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "prometheus.yml").write_text(textwrap.dedent(f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        scrape_configs:
          - job_name: tlsfront
            static_configs: [{{targets: ["127.0.0.1:{servers['ready']}"]}}]
    """))
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(expr: str) -> list:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["data"]["result"]

    try:
        deadline = time.monotonic() + 60
        result: list = []
        expr = 'tlsfront_tls_handshake_failures_total{reason="no_shared_cipher"}'
        while time.monotonic() < deadline:
            try:
                result = query(expr)
                if result:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert [r["value"][1] for r in result] == ["3"]
        assert query('tlsfront_tls_handshake_failures_total{reason="plain_http"}')[0]["value"][1] == "1"
        assert query('sum(tlsfront_tls_handshakes_total{result="ok"})')[0]["value"][1] == "2"
        assert query('tlsfront_backend_up{backend="127.0.0.1:8081"}')[0]["value"][1] == "0"
        assert query('count(tlsfront_tls_handshake_failures_total{vhost="www.example.test:8443"})'
                     )[0]["value"][1] == str(10 + 6)  # every reason + each certificate alert
    finally:
        proc.terminate()
        proc.wait(20)
