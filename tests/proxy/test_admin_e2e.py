"""Issue 8's acceptance test: a real Prometheus scrapes a running `tlsfront serve` while real
clients succeed and fail in each way; the Prometheus HTTP API must show each count exactly.

Clients: curl (successes, plain HTTP, a client that does not trust our CA, a dead backend) and
`openssl s_client` (refused protocol, no shared cipher, missing client certificate).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import Proc, free_ports, start_backend, start_proxy, wait_listening, wait_prometheus_ready

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    None in (CURL, OPENSSL, PROMETHEUS),
    reason="LOUD: curl, openssl and prometheus are needed (tests/install-sysdeps.sh installs them)")

CONFIG = """
[server]
allow_root = true
error_log = "{d}/error.log"
access_log = "{d}/access.log"
ssl_request_log = "{d}/ssl_request.log"
log_level = "info"
shutdown_grace_seconds = 2

[admin]
listen = "127.0.0.1:{p_admin}"

[timeouts]
client_handshake_seconds = 1

[tls]
certificate = "{pki.server_cert}"
key = "{pki.server_key}"
chain = "{pki.intermediate_cert}"

[[vhost]]   # 0: the main TLS vhost (TLS 1.2 + 1.3, ECDHE+AESGCM/CHACHA20 only)
listen = "127.0.0.1:{p_main}"
server_name = "main.test"
tls = true
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # 1: client certificates required
listen = "127.0.0.1:{p_client}"
server_name = "client.test"
tls = {{ verify_client = "require", ca_certificate_file = "{pki.client_ca_cert}" }}
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # 2: its only backend is down
listen = "127.0.0.1:{p_down}"
server_name = "down.test"
tls = true
backends = ["http://127.0.0.1:{dead}"]
"""

PROMETHEUS_YML = """
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: tlsfront
    static_configs: [{{targets: ["127.0.0.1:{p_admin}"]}}]
"""


@pytest.fixture(scope="module")
def world(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("admin-e2e")
    names = ["b1", "dead", "p_main", "p_client", "p_down", "p_admin", "p_prom"]
    ports = dict(zip(names, free_ports(len(names))))
    backend = start_backend(d, ports["b1"], name="b1")
    cfg = d / "tlsfront.toml"
    cfg.write_text(CONFIG.format(d=d, pki=pki, **ports))
    proxy = start_proxy(d, cfg, [("127.0.0.1", ports[n]) for n in ("p_main", "p_client", "p_down", "p_admin")])
    (d / "prometheus.yml").write_text(PROMETHEUS_YML.format(**ports))
    prom = Proc("prometheus", [PROMETHEUS, f"--config.file={d / 'prometheus.yml'}",
                               f"--storage.tsdb.path={d / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{ports['p_prom']}"], d)
    try:
        wait_listening("127.0.0.1", ports["p_prom"], prom, timeout=60)
        # Prometheus listens before its TSDB is open and answers the query API with 503 until
        # then: a query in that window was this test's "HTTP error". /-/ready says when it is open.
        wait_prometheus_ready(ports["p_prom"], prom)
        yield d, ports, pki, proxy
    finally:
        prom.stop(20)
        code = proxy.stop()
        backend.stop()
        assert code == 0 and "Traceback" not in proxy.output(), proxy.output()


def _curl(*args: str) -> str:
    """Run curl; return the HTTP status it got ("000" when the connection failed)."""
    r = subprocess.run([CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", *args],
                       capture_output=True, text=True, timeout=30)
    return r.stdout


def _s_client(port: int, *args: str) -> None:
    subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args],
                   input=b"", capture_output=True, timeout=30)


def _query(port: int, expr: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        result = json.load(r)["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def test_prometheus_sees_every_count_exactly(world) -> None:
    d, ports, pki, proxy = world
    main, client, down = (f"main.test:{ports['p_main']}", f"client.test:{ports['p_client']}",
                          f"down.test:{ports['p_down']}")
    ca = str(pki.ca_cert)
    # Prometheus scrapes already (a gauge's short-lived value is only seen from then on).
    deadline = time.monotonic() + 60
    while _query(ports["p_prom"], 'up{job="tlsfront"}') != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    # Traffic: 3 good requests and each failure kind, with distinct counts.
    for i in range(3):
        assert _curl("--cacert", ca, f"https://127.0.0.1:{ports['p_main']}/ok{i}") == "200"
    # One request holds a pooled backend connection for 3 s (the in-use gauge is scraped at 1)
    # while the failures below, which never reach a backend, go on.
    slow = subprocess.Popen([CURL, "-s", "-o", "/dev/null", "--max-time", "20", "--cacert", ca,
                             f"https://127.0.0.1:{ports['p_main']}/slow/3"])
    _s_client(ports["p_main"], "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")          # refused protocol x1
    for _ in range(2):
        _s_client(ports["p_main"], "-tls1_2", "-cipher", "AES128-SHA")               # no shared cipher x2
    assert _curl(f"https://127.0.0.1:{ports['p_main']}/") == "000"                   # curl rejects our CA x1
    assert _curl(f"http://127.0.0.1:{ports['p_main']}/plain") == "400"               # plain HTTP x1
    for _ in range(2):
        _s_client(ports["p_client"], "-tls1_2")                                      # no client cert x2
    assert _curl("--cacert", ca, f"https://127.0.0.1:{ports['p_down']}/") == "502"  # backend down x1
    with socket.create_connection(("127.0.0.1", ports["p_main"])) as s:             # eof x2: half a hello
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    with socket.create_connection(("127.0.0.1", ports["p_main"])) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)
    silent = socket.create_connection(("127.0.0.1", ports["p_client"]))            # timeout x1: silence
    assert slow.wait(30) == 0

    fail = 'tlsfront_tls_handshake_failures_total{{vhost="{v}",reason="{r}",alert="{a}"}}'
    expected = {
        f'tlsfront_http_requests_total{{vhost="{main}",code="2xx"}}': 4,
        f'tlsfront_http_requests_total{{vhost="{main}",code="4xx"}}': 1,  # the plain-HTTP 400
        f'tlsfront_http_rejected_requests_total{{vhost="{main}",reason="plain_http"}}': 1,
        f'sum(tlsfront_http_rejected_requests_total)': 1,
        f'sum(tlsfront_tls_handshakes_total{{vhost="{main}",result="ok"}})': 4,
        f'sum(tlsfront_tls_handshakes_total{{vhost="{main}",result="failed"}})': 7,
        # Failed handshakes by the highest version the ClientHello offered (-tls1_1: TLSv1.1;
        # -tls1_2 x2; curl: TLSv1.3); plain HTTP and half hellos x2: unknown.
        f'tlsfront_tls_handshakes_total{{vhost="{main}",result="failed",protocol="TLSv1.1"}}': 1,
        f'tlsfront_tls_handshakes_total{{vhost="{main}",result="failed",protocol="TLSv1.2"}}': 2,
        f'tlsfront_tls_handshakes_total{{vhost="{main}",result="failed",protocol="TLSv1.3"}}': 1,
        f'tlsfront_tls_handshakes_total{{vhost="{main}",result="failed",protocol="unknown"}}': 3,
        f'tlsfront_tls_handshakes_total{{vhost="{client}",result="failed",protocol="TLSv1.2"}}': 2,
        f'tlsfront_tls_handshakes_total{{vhost="{client}",result="failed",protocol="unknown"}}': 1,
        f'sum(tlsfront_tls_negotiated_total{{vhost="{main}"}})': 4,
        f'max_over_time(tlsfront_backend_connections_in_use{{vhost="{main}",backend="127.0.0.1:{ports["b1"]}"}}[5m])': 1,
        f'tlsfront_backend_connections_in_use{{vhost="{main}",backend="127.0.0.1:{ports["b1"]}"}}': 0,
        'tlsfront_worker_restarts_total': 0,  # pre-initialised: 0, not "No data"
        'tlsfront_config_reloads_total{result="success"}': 1,
        'tlsfront_config_reloads_total{result="failure"}': 0,
        fail.format(v=main, r="unsupported_protocol", a="none"): 1,
        fail.format(v=main, r="no_shared_cipher", a="none"): 2,
        fail.format(v=main, r="client_rejected_cert", a="unknown_ca"): 1,
        fail.format(v=main, r="plain_http", a="none"): 1,
        fail.format(v=main, r="eof", a="none"): 2,
        fail.format(v=client, r="timeout", a="none"): 1,
        fail.format(v=client, r="client_cert_missing", a="none"): 2,
        f'sum(tlsfront_tls_handshake_failures_total{{vhost="{client}"}})': 3,
        f'tlsfront_http_requests_total{{vhost="{down}",code="5xx"}}': 1,
        f'tlsfront_backend_errors_total{{vhost="{down}",backend="127.0.0.1:{ports["dead"]}",kind="refused"}}': 1,
        f'tlsfront_backend_up{{vhost="{down}",backend="127.0.0.1:{ports["dead"]}"}}': 0,
        f'count(tlsfront_tls_handshake_failures_total{{vhost="{main}"}})': 10 + 6,  # pre-initialised
        'count(tlsfront_certificate_expiry_timestamp_seconds) > 0': 3,
        'count(tlsfront_build_info)': 1,
    }
    deadline = time.monotonic() + 45
    while True:
        seen = {expr: _query(ports["p_prom"], expr) for expr in expected}
        if seen == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    silent.close()
    wrong = {e: (seen[e], want) for e, want in expected.items() if seen[e] != want}
    assert not wrong, f"(seen, expected) per query: {wrong}\nerror log:\n{(d / 'error.log').read_text()[-3000:]}"
    # The same events, read back from the error log by the analyzer (issue 3's round trip).
    tlslog = Path(sys.executable).parent / "tlslog"
    if tlslog.exists():
        out = subprocess.run([str(tlslog), "scan", "--format", "json", str(d / "error.log")],
                             capture_output=True, timeout=60)
        events = json.loads(out.stdout)["events"]
        assert {k: v for k, v in events.items() if v} == {
            "plain_http_on_tls_port": 1, "client_rejected_cert": 1, "no_shared_cipher": 2,
            "protocol_mismatch": 1, "client_cert_missing": 2, "handshake_eof_or_reset": 2,
            "handshake_timeout": 1, "backend_unavailable": 1}, out.stdout
        # ... and the TLS requests from the one ssl_request_log, per vhost (its lines end with the vhost label):
        # 3 + /slow/3 on main, the 502 on down; curl negotiates TLS 1.3. No line for the plain-HTTP 400 (no TLS).
        ssl_log = d / "ssl_request.log"
        out = subprocess.run([str(tlslog), "scan", "--format", "json", str(ssl_log)], capture_output=True,
                             timeout=60)
        protocols = json.loads(out.stdout)["protocols"]
        assert {vh: p["protocols"] for vh, p in protocols.items()} == {
            main: {"TLSv1.3": 4}, down: {"TLSv1.3": 1}}, ssl_log.read_text()
        assert {vh: sum(p["ciphers"].values()) for vh, p in protocols.items()} == {main: 4, down: 1}
        out = subprocess.run([str(tlslog), "scan", "--format", "prometheus", str(ssl_log)], capture_output=True,
                             timeout=60, text=True)
        requests = {(s.labels["vhost"], s.labels["protocol"]): s.value for fam in text_string_to_metric_families(
            out.stdout) for s in fam.samples if s.name == "tlslog_tls_requests_total"}
        assert requests == {(main, "TLSv1.3"): 4, (down, "TLSv1.3"): 1}, out.stdout
    if PROMTOOL:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['p_admin']}/metrics", timeout=5) as r:
            text = r.read()
        out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=30)
        assert out.returncode == 0 and not out.stdout and not out.stderr, (out.stdout, out.stderr)
