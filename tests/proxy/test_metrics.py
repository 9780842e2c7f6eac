"""metrics: values on a fresh CollectorRegistry, pre-initialisation, promtool, worker sums."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as parse_text_format

from tlsfront import tlserrors
from tlsfront.metrics import (
    CERT_ALERTS,
    REASONS,
    Metrics,
    SnapshotCollector,
    SnapshotWriter,
    merge_snapshots,
)
from tlsfront.model import Address, Backend, CertKey, TLSSettings, VHost

PROMTOOL = shutil.which("promtool")
BUILD = {"version": "0.1.0", "python": "3", "twisted": "t", "pyopenssl": "p", "cryptography": "c",
         "openssl": "OpenSSL x"}


def _vhosts(pki) -> tuple[VHost, ...]:
    be = (Backend("http://127.0.0.1:8081", "127.0.0.1", 8081), Backend("http://127.0.0.1:8082", "127.0.0.1", 8082))
    tls = TLSSettings(certs=(CertKey(pki.server_cert, pki.server_key), CertKey(pki.server_rsa_cert, pki.server_rsa_key)))
    return (
        VHost(0, "www.example.test", Address("127.0.0.1", 8443), tls, be),
        VHost(1, "www.example.test", Address("127.0.0.1", 8080), None, be[:1]),
    )


@pytest.fixture
def setup(pki):
    vhosts = _vhosts(pki)
    m = Metrics(vhosts, build=BUILD, clock=lambda: 1234.5)
    reg = CollectorRegistry()
    reg.register(m.collector())
    return m, reg, vhosts[0].label, vhosts[1].label


def test_everything_pre_initialised(setup) -> None:
    m, reg, tls, plain = setup
    for reason in REASONS:
        assert reg.get_sample_value("tlsfront_tls_handshake_failures_total",
                                    {"vhost": tls, "reason": reason, "alert": "none"}) == 0
    for alert in CERT_ALERTS:
        assert reg.get_sample_value("tlsfront_tls_handshake_failures_total",
                                    {"vhost": tls, "reason": "client_rejected_cert", "alert": alert}) == 0
    # Plain-HTTP vhosts have no TLS series.
    assert reg.get_sample_value("tlsfront_tls_handshake_failures_total",
                                {"vhost": plain, "reason": "eof", "alert": "none"}) is None
    for label in (tls, plain):
        for code in ("1xx", "2xx", "3xx", "4xx", "5xx"):
            assert reg.get_sample_value("tlsfront_http_requests_total", {"vhost": label, "code": code}) == 0
    for kind in ("refused", "reset", "timeout"):
        assert reg.get_sample_value("tlsfront_backend_errors_total",
                                    {"vhost": tls, "backend": "127.0.0.1:8082", "kind": kind}) == 0
    assert reg.get_sample_value("tlsfront_backend_up", {"vhost": tls, "backend": "127.0.0.1:8081"}) == 1
    assert reg.get_sample_value("tlsfront_tls_session_cache_misses_total", {"vhost": tls}) == 0
    assert reg.get_sample_value("tlsfront_tls_handshake_duration_seconds_count", {"vhost": tls}) == 0


def test_events_count_exactly(setup) -> None:
    m, reg, tls, plain = setup
    for _ in range(3):
        m.connection_opened(tls)
    m.connection_closed(tls)
    m.handshake_ok(tls, "TLSv1.3", "TLS_AES_128_GCM_SHA256", resumed=False, seconds=0.002)
    m.handshake_ok(tls, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", resumed=True, seconds=0.0004)
    m.handshake_ok(tls, "TLSv1", "ECDHE-ECDSA-AES128-SHA", resumed=False, seconds=3.0)
    m.cache_miss(tls)
    m.handshake_failed(tls, tlserrors.classify_errors([("SSL routines", "", "tlsv1 alert unknown ca")]))
    m.handshake_failed(tls, tlserrors.classify_errors([("SSL routines", "", "no shared cipher")]))
    m.handshake_failed(tls, tlserrors.plain_http())
    m.handshake_failed(tls, "not-a-reason")
    m.request_done(tls, 200, 0.01, bytes_in=100, bytes_out=1000, quirks=("nokeepalive", "weird"))
    m.request_done(tls, 502, 0.2, bytes_in=50, bytes_out=150)
    m.request_done(plain, 301, 0.001, bytes_in=10, bytes_out=20)
    m.backend_request(tls, "127.0.0.1:8081")
    m.backend_error(tls, "127.0.0.1:8081", "refused")
    m.backend_up(tls, "127.0.0.1:8081", False)
    m.backend_connections(tls, "127.0.0.1:8082", 4)
    m.config_loaded(True)
    m.config_loaded(False)
    m.worker_restarted()
    g = reg.get_sample_value
    assert g("tlsfront_connections_total", {"vhost": tls}) == 3
    assert g("tlsfront_connections_active", {"vhost": tls}) == 2
    assert g("tlsfront_tls_handshakes_total", {"vhost": tls, "protocol": "TLSv1.3", "result": "ok"}) == 1
    assert g("tlsfront_tls_handshakes_total", {"vhost": tls, "protocol": "unknown", "result": "failed"}) == 4
    assert g("tlsfront_tls_negotiated_total",
             {"vhost": tls, "protocol": "TLSv1", "cipher": "ECDHE-ECDSA-AES128-SHA"}) == 1
    assert g("tlsfront_tls_resumptions_total", {"vhost": tls}) == 1
    assert g("tlsfront_tls_session_cache_misses_total", {"vhost": tls}) == 1
    f = {"vhost": tls}
    assert g("tlsfront_tls_handshake_failures_total", {**f, "reason": "client_rejected_cert", "alert": "unknown_ca"}) == 1
    assert g("tlsfront_tls_handshake_failures_total", {**f, "reason": "no_shared_cipher", "alert": "none"}) == 1
    assert g("tlsfront_tls_handshake_failures_total", {**f, "reason": "plain_http", "alert": "none"}) == 1
    assert g("tlsfront_tls_handshake_failures_total", {**f, "reason": "other", "alert": "none"}) == 1
    assert g("tlsfront_tls_handshake_duration_seconds_bucket", {"vhost": tls, "le": "0.0005"}) == 1
    assert g("tlsfront_tls_handshake_duration_seconds_bucket", {"vhost": tls, "le": "0.0025"}) == 2
    assert g("tlsfront_tls_handshake_duration_seconds_bucket", {"vhost": tls, "le": "+Inf"}) == 3
    assert g("tlsfront_tls_handshake_duration_seconds_sum", {"vhost": tls}) == pytest.approx(3.0024)
    assert g("tlsfront_http_requests_total", {"vhost": tls, "code": "2xx"}) == 1
    assert g("tlsfront_http_requests_total", {"vhost": tls, "code": "5xx"}) == 1
    assert g("tlsfront_http_requests_total", {"vhost": plain, "code": "3xx"}) == 1
    assert g("tlsfront_http_request_bytes_total", {"vhost": tls}) == 150
    assert g("tlsfront_http_response_bytes_total", {"vhost": tls}) == 1150
    assert g("tlsfront_http_request_duration_seconds_count", {"vhost": tls}) == 2
    assert g("tlsfront_quirks_applied_total", {"vhost": tls, "quirk": "nokeepalive"}) == 1
    assert g("tlsfront_quirks_applied_total", {"vhost": tls, "quirk": "other"}) == 1
    b = {"vhost": tls, "backend": "127.0.0.1:8081"}
    assert g("tlsfront_backend_requests_total", b) == 1
    assert g("tlsfront_backend_errors_total", {**b, "kind": "refused"}) == 1
    assert g("tlsfront_backend_up", b) == 0
    assert g("tlsfront_backend_connections_in_use", {"vhost": tls, "backend": "127.0.0.1:8082"}) == 4
    assert g("tlsfront_config_reloads_total", {"result": "success"}) == 1
    assert g("tlsfront_config_reloads_total", {"result": "failure"}) == 1
    assert g("tlsfront_config_last_reload_successful") == 0
    assert g("tlsfront_config_last_reload_success_timestamp_seconds") == 1234.5
    assert g("tlsfront_worker_restarts_total") == 1
    assert g("tlsfront_build_info", BUILD) == 1


def test_unbounded_values_are_folded(setup) -> None:
    m, reg, tls, _ = setup
    for i in range(300):
        m.handshake_ok(tls, "TLSv1.3", f"CIPHER-{i}", False, 0.001)
    m.handshake_ok(tls, "QUIC-weird", "X", False, 0.001)
    families = {f.name: f for f in parse_text_format(generate_latest(reg).decode())}
    ciphers = {s.labels["cipher"] for s in families["tlsfront_tls_negotiated"].samples}
    assert len(ciphers) == 128 + 1  # MAX_CIPHER_LABELS, then "other"
    assert reg.get_sample_value("tlsfront_tls_negotiated_total",
                                {"vhost": tls, "protocol": "TLSv1.3", "cipher": "other"}) > 0
    assert reg.get_sample_value("tlsfront_tls_handshakes_total",
                                {"vhost": tls, "protocol": "other", "result": "ok"}) == 1


def test_certificate_gauges_match_the_files(setup, pki) -> None:
    m, reg, tls, _ = setup
    for path in (pki.server_cert, pki.server_rsa_cert):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        labels = {"vhost": tls, "subject_cn": "localhost", "serial": f"{cert.serial_number:x}"}
        assert reg.get_sample_value("tlsfront_certificate_expiry_timestamp_seconds", labels) == \
            cert.not_valid_after_utc.timestamp()
        assert reg.get_sample_value("tlsfront_certificate_not_before_timestamp_seconds", labels) == \
            cert.not_valid_before_utc.timestamp()


def test_unreadable_certificate_is_skipped(tmp_path) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    vh = VHost(0, "x", Address("*", 443), TLSSettings(certs=(CertKey(bad, bad), CertKey(tmp_path / "none", bad))), ())
    m = Metrics([vh], build=BUILD)
    assert m.certificates == []


@pytest.mark.skipif(PROMTOOL is None, reason="LOUD: promtool is not installed")
def test_promtool_accepts_the_exposition(setup, tmp_path) -> None:
    m, reg, tls, _ = setup
    m.handshake_ok(tls, "TLSv1.3", "TLS_AES_128_GCM_SHA256", False, 0.002)
    m.request_done(tls, 200, 0.01, 1, 2)
    text = generate_latest(reg)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", (r.stdout, r.stderr)
    # OpenMetrics: parses, ends with # EOF, counters carry _total.
    om = generate_openmetrics(reg).decode()
    assert om.endswith("# EOF\n")
    names = {f.name for f in text_string_to_metric_families(om)}
    assert {"tlsfront_tls_handshakes", "tlsfront_certificate_expiry_timestamp_seconds", "tlsfront_build"} <= names


def test_merge_sums_counters_and_merges_gauges(pki) -> None:
    vhosts = _vhosts(pki)
    tls = vhosts[0].label
    a, b = Metrics(vhosts, build=BUILD), Metrics(vhosts, build=BUILD)
    a.handshake_ok(tls, "TLSv1.3", "C", False, 0.001)
    b.handshake_ok(tls, "TLSv1.3", "C", True, 0.1)
    a.connection_opened(tls)
    b.connection_opened(tls)
    b.backend_up(tls, "127.0.0.1:8081", False)
    merged = merge_snapshots([a.snapshot(), b.snapshot()])
    series = {n: {tuple(k): v for k, v in rows} for n, rows in merged["series"].items()}
    assert series["tls_handshakes"][(tls, "TLSv1.3", "ok")] == 2
    assert series["tls_resumptions"][(tls,)] == 1
    assert series["connections_active"][(tls,)] == 2
    assert series["backend_up"][(tls, "127.0.0.1:8081")] == 0  # down in one worker: down
    hist = {tuple(k): r for k, r in merged["histograms"]["tls_handshake_duration_seconds"]}
    assert sum(hist[(tls,)][:-1]) == 2 and hist[(tls,)][-1] == pytest.approx(0.101)


def test_workers_summed_through_snapshot_files(pki, tmp_path) -> None:
    """Real forked workers write snapshots; the master's /metrics sums them exactly."""
    vhosts = _vhosts(pki)
    tls = vhosts[0].label
    pids = []
    for n in (1, 2, 3):
        pid = os.fork()
        if pid == 0:
            try:
                w = Metrics(vhosts, build=BUILD)
                for _ in range(n):
                    w.handshake_ok(tls, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", False, 0.001)
                    w.request_done(tls, 200, 0.01, 10, 20)
                    w.connection_opened(tls)
                SnapshotWriter(w, tmp_path).write()
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    master = Metrics(vhosts, build=BUILD)
    master.worker_restarted()
    live = pids[:2]  # pretend the third worker died
    reg = CollectorRegistry()
    reg.register(master.collector(extra_snapshots=SnapshotCollector(tmp_path, lambda: live)))
    g = reg.get_sample_value
    assert g("tlsfront_tls_handshakes_total", {"vhost": tls, "protocol": "TLSv1.2", "result": "ok"}) == 6
    assert g("tlsfront_http_requests_total", {"vhost": tls, "code": "2xx"}) == 6
    assert g("tlsfront_http_response_bytes_total", {"vhost": tls}) == 120
    assert g("tlsfront_http_request_duration_seconds_count", {"vhost": tls}) == 6
    # Gauges of the dead worker are dropped, its counters kept.
    assert g("tlsfront_connections_active", {"vhost": tls}) == 1 + 2
    assert g("tlsfront_worker_restarts_total") == 1
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == sorted(f"worker-{p}.json" for p in pids)
    if PROMTOOL:
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=generate_latest(reg), capture_output=True)
        assert r.returncode == 0, r.stdout


def test_reload_keeps_counts_and_adds_new_vhosts(setup, pki) -> None:
    m, reg, tls, _ = setup
    m.handshake_ok(tls, "TLSv1.3", "TLS_AES_128_GCM_SHA256", False, 0.001)
    extra = VHost(2, "new.test", Address("127.0.0.2", 9443), TLSSettings(certs=(CertKey(pki.other_cert, pki.other_key),)), ())
    m.set_vhosts((*_vhosts(pki), extra))
    assert reg.get_sample_value("tlsfront_tls_handshakes_total",
                                {"vhost": tls, "protocol": "TLSv1.3", "result": "ok"}) == 1
    assert reg.get_sample_value("tlsfront_tls_handshake_failures_total",
                                {"vhost": "new.test:9443", "reason": "timeout", "alert": "none"}) == 0
    cns = {c.subject_cn for c in m.certificates}
    assert cns == {"localhost", "other.test"}


def test_days_left(pki) -> None:
    from tlsfront.metrics import certificate_facts, days_left, not_after_text
    facts = certificate_facts("v:443", pki.server_cert)
    assert facts is not None
    assert days_left(facts, now=facts.not_after - 86400 * 14) == pytest.approx(14)
    assert days_left(facts, now=facts.not_after + 86400) == pytest.approx(-1)
    assert not_after_text(facts).endswith(" UTC")
    expired = certificate_facts("v:443", pki.client_expired_cert)
    assert expired is not None and days_left(expired) < 0


def test_process_series_pre_initialised_to_zero(setup) -> None:
    """docs/metrics.md: a healthy proxy shows 0 restarts and 0 failed reloads, not "No data"."""
    m, reg, tls, plain = setup
    assert reg.get_sample_value("tlsfront_worker_restarts_total") == 0
    assert reg.get_sample_value("tlsfront_config_reloads_total", {"result": "success"}) == 0
    assert reg.get_sample_value("tlsfront_config_reloads_total", {"result": "failure"}) == 0
    # ... and in the master's merged view of several workers' snapshots (counters add up).
    merged = merge_snapshots([m.snapshot(), Metrics((), build=BUILD).snapshot()])
    rows = dict((tuple(k), v) for k, v in merged["series"]["config_reloads"])
    assert rows == {("success",): 0, ("failure",): 0}


def test_rejected_requests_by_reason(setup) -> None:
    from tlsfront.metrics import REJECT_REASON_SET

    m, reg, tls, plain = setup
    for label in (tls, plain):
        for reason in REJECT_REASON_SET:  # pre-initialised
            assert reg.get_sample_value("tlsfront_http_rejected_requests_total",
                                        {"vhost": label, "reason": reason}) == 0
    m.request_rejected(tls, 413)
    m.request_rejected(tls, 400, "plain_http")
    m.request_rejected(tls, 400)
    m.request_rejected(tls, 418)  # no reason for this status: other
    m.request_rejected(tls, 400, "made-up")  # an unknown reason never becomes a label
    g = reg.get_sample_value
    r = {"vhost": tls}
    assert g("tlsfront_http_rejected_requests_total", {**r, "reason": "body_too_large"}) == 1
    assert g("tlsfront_http_rejected_requests_total", {**r, "reason": "plain_http"}) == 1
    assert g("tlsfront_http_rejected_requests_total", {**r, "reason": "bad_request"}) == 1
    assert g("tlsfront_http_rejected_requests_total", {**r, "reason": "other"}) == 2
    assert g("tlsfront_http_rejected_requests_total", {**r, "reason": "made-up"}) is None


def test_failed_handshakes_by_offered_protocol(setup) -> None:
    m, reg, tls, plain = setup
    for protocol in ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "unknown"):  # pre-initialised
        assert reg.get_sample_value("tlsfront_tls_handshakes_total",
                                    {"vhost": tls, "protocol": protocol, "result": "failed"}) == 0
    no_cipher = tlserrors.classify_errors([("SSL routines", "", "no shared cipher")])
    m.handshake_failed(tls, no_cipher, protocol="TLSv1")
    m.handshake_failed(tls, no_cipher, protocol="TLSv1")
    m.handshake_failed(tls, tlserrors.eof())  # no ClientHello parsed
    m.handshake_failed(tls, no_cipher, protocol="SSLv2")  # not in the bounded set
    m.handshake_failed(tls, no_cipher, protocol="0x7a7a")
    g = reg.get_sample_value
    assert g("tlsfront_tls_handshakes_total", {"vhost": tls, "protocol": "TLSv1", "result": "failed"}) == 2
    assert g("tlsfront_tls_handshakes_total", {"vhost": tls, "protocol": "unknown", "result": "failed"}) == 3
    assert g("tlsfront_tls_handshakes_total", {"vhost": tls, "protocol": "SSLv2", "result": "failed"}) is None


def test_client_hello_max_version_is_the_failed_protocol_label() -> None:
    """The data path labels a failed handshake with sniff's max_version_name: every value it can
    produce for a TLS record is in the metric's bounded set (GREASE and SSLv2 fold to unknown)."""
    from tlsfront import sniff
    from tlsfront.metrics import FAILED_PROTOCOLS

    for versions, expected in [((0x0301,), "TLSv1"), ((0x0304, 0x0303), "TLSv1.3"),
                               ((0x7A7A, 0x0302), "TLSv1.1"), ((0x0300,), "SSLv3"), ((0x7A7A,), "unknown")]:
        hello = sniff.ClientHello(legacy_version=0x0303, session_id_length=0, cipher_count=1, versions=versions)
        assert hello.max_version_name == expected
        assert expected in FAILED_PROTOCOLS


def _event_calls() -> list[tuple[str, int, object]]:
    """(file, line, first argument) of every ``<...>hooks.event(...)`` call in the proxy's code."""
    import ast

    import tlsfront

    calls = []
    for path in sorted(Path(tlsfront.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "event"
                    and ast.unparse(node.func.value).endswith("hooks")):
                first = node.args[0] if node.args else None
                value = first.value if isinstance(first, ast.Constant) else ast.unparse(first) if first else None
                calls.append((path.name, node.lineno, value))
    return calls


def test_every_hooks_event_name_is_a_metrics_method() -> None:
    """Hooks.event(name) calls Metrics.<name>: a name that does not exist would count nothing
    (it used to be ignored silently: "bad_request")."""
    calls = _event_calls()
    assert len(calls) >= 20 and {f for f, _l, _n in calls} >= {"frontend.py", "listeners.py", "serve.py"}
    wrong = [(f, line, name) for f, line, name in calls
             if not isinstance(name, str) or not callable(getattr(Metrics, name, None))]
    assert not wrong, f"hooks.event names that are not Metrics methods (file, line, name): {wrong}"


def test_hooks_event_with_an_unknown_name_raises(setup) -> None:
    from tlsfront.frontend import Hooks

    m, reg, tls, plain = setup
    with pytest.raises(AttributeError, match="no method 'bad_request'"):
        Hooks(metrics=m).event("bad_request", tls, 400)
    Hooks().event("bad_request", tls, 400)  # without a metrics object nothing is counted, by design
    Hooks(metrics=m).event("handshake_failed", tls, "eof", protocol="TLSv1.2")
    assert reg.get_sample_value("tlsfront_tls_handshakes_total",
                                {"vhost": tls, "protocol": "TLSv1.2", "result": "failed"}) == 1
