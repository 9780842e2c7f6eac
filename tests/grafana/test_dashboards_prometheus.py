"""Issue 10's acceptance test: every query of every dashboard panel returns data from a real Prometheus.

The world: `tlsfront serve` (workers, the `pki` fixture's certificates, the demo echo backend) with five vhosts;
`tlslog follow --listen` on tlsfront's own error, ssl_request and access logs; history backfilled with
`tlslog backfill` + `promtool tsdb create-blocks-from openmetrics` from a synthetic Apache log of 40 minutes ago;
and the Debian `prometheus`, configured from conf/prometheus.yml (scrape interval shortened to 1 s, targets
replaced) with conf/alerts.yml. Traffic includes every failure kind: a refused protocol, no shared cipher, a
client rejecting our CA, a missing client certificate, plain HTTP, a dead backend; plus a TLS 1.0 client on a
legacy vhost, session resumption, a configuration reload (SIGHUP) and a worker killed (the master restarts it).

Then every panel query (and annotation), with the variables substituted as Grafana would ($vhost -> All, and
then each real vhost in turn; $instance -> the scrape target, $__rate_interval -> 1m, $__range -> 1h), goes to
Prometheus's HTTP API (query_range for graphs, query for instant targets) and must return at least one series;
some panels must show the traffic's exact counts; every metric name a query or an alert rule uses must be on
one of the two scraped /metrics pages; the variables' label_values queries must find the vhosts and instance;
every alert rule must evaluate without error, and the ones this traffic provokes must be pending (their `for:`
is longer than the test). About 20 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dashboard_queries import FILES, REPO, Query, metric_names, queries, substitute, variable_queries

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from helpers import (Proc, free_ports, start_backend, start_proxy, wait_listening,  # noqa: E402
                     wait_prometheus_ready)

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
TLSLOG = str(Path(sys.executable).parent / "tlslog")
CONF = REPO / "conf"

pytestmark = pytest.mark.skipif(
    None in (CURL, OPENSSL, PROMETHEUS, PROMTOOL),
    reason="LOUD: curl, openssl, prometheus and promtool are needed (tests/install-sysdeps.sh installs them)")

CONFIG = """
[server]
error_log = "{d}/error_log"
access_log = "{d}/access_log"
ssl_request_log = "{d}/ssl_request_log"
log_level = "info"
shutdown_grace_seconds = 2
allow_root = true   # CI runs as root; the test's files belong to root

[admin]
listen = "127.0.0.1:{p_admin}"

[timeouts]
client_handshake_seconds = 2

[tls]
certificate = "{pki.server_cert}"
key = "{pki.server_key}"
chain = "{pki.intermediate_cert}"

[[vhost]]   # TLS 1.2 + 1.3, ECDHE only
listen = "127.0.0.1:{p_main}"
server_name = "main.test"
tls = true
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # client certificates required
listen = "127.0.0.1:{p_client}"
server_name = "client.test"
tls = {{ verify_client = "require", ca_certificate_file = "{pki.client_ca_cert}" }}
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # its only backend is down
listen = "127.0.0.1:{p_down}"
server_name = "down.test"
tls = true
backends = ["http://127.0.0.1:{dead}"]

[[vhost]]   # still allows TLS 1.0 (who uses it?)
listen = "127.0.0.1:{p_legacy}"
server_name = "legacy.test"
backends = ["http://127.0.0.1:{b1}"]
[vhost.tls]
protocols = "all -SSLv3"
insecure_legacy_protocols = true
ciphers = "ECDHE+AESGCM:ECDHE+AES"

[[vhost]]   # a certificate that expires in 5 days
listen = "127.0.0.1:{p_expiring}"
server_name = "expiring.test"
backends = ["http://127.0.0.1:{b1}"]
[vhost.tls]
certificate = "{d}/expiring.crt"
key = "{d}/expiring.key"
"""

RANGE_STEP = 15  # seconds between points of a query_range, as Grafana would ask for a 40-minute panel
VALUES = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s"}


# -- Prometheus HTTP API -----------------------------------------------------------------------------------------
class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1/"

    def get(self, path: str, **params) -> dict:
        url = self.base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float) -> list[dict]:
        return self.get("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=str(RANGE_STEP))["result"]


def _wait(what: str, ok, timeout: float = 45.0, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        got = ok()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- the world ----------------------------------------------------------------------------------------------------
def _backfill(d: Path, tsdb: Path, start: float) -> str:
    """A synthetic Apache error log (about 200 s of traffic, 40 minutes ago) -> tlslog backfill -> TSDB blocks."""
    from tlslog import synth

    log = d / "archive" / "error.log"
    log.parent.mkdir()
    with open(log, "w", encoding="ascii") as f:
        for text, _category in synth.generate(20000, tls_fraction=0.1, seed=7, start=start):
            f.write(text + "\n")
    om = d / "backfill.om"
    r = subprocess.run([TLSLOG, "backfill", str(log), "--out", str(om), "--step", "15s", "--timezone", "UTC"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(om), str(tsdb)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    final: dict[tuple[str, str], float] = {}  # (category, source) -> last sample: the events it holds
    for line in om.read_text().splitlines():
        if line.startswith("tlslog_events_total{"):
            labels, value, _ts = line.rsplit(" ", 2)
            kv = dict(part.split("=", 1) for part in labels[len("tlslog_events_total{"):-1].split(","))
            final[(kv["category"].strip('"'), kv["source"].strip('"'))] = float(value)
    (source,) = {src for _cat, src in final}
    categories = {cat for (cat, _src), n in final.items() if n > 0}
    assert len(categories) >= 3, final
    return source, categories


def _prometheus_config(d: Path, targets: dict[str, str]) -> Path:
    """conf/prometheus.yml with the test's targets, 1 s intervals and an absolute rule_files path."""
    cfg = yaml.safe_load((CONF / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    cfg["rule_files"] = [str(CONF / f) for f in cfg["rule_files"]]
    for job in cfg["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    assert set(targets) == {j["job_name"] for j in cfg["scrape_configs"]}
    path = d / "prometheus.yml"
    path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def world(pki, tmp_path_factory):
    from tlsfront import certgen

    d = tmp_path_factory.mktemp("grafana-e2e")
    names = ["b1", "dead", "p_main", "p_client", "p_down", "p_legacy", "p_expiring", "p_admin", "p_prom",
             "p_tlslog"]
    ports = dict(zip(names, free_ports(len(names))))
    # a certificate that expires in 5 days, from its own CA (the pki fixture keeps no CA key)
    expiring_ca = certgen.issue("expiring test CA", is_ca=True, days=30)
    expiring = certgen.issue("expiring.test", issuer=expiring_ca, days=5, dns_names=("localhost",),
                             ip_addresses=("127.0.0.1",))
    expiring.write(d / "expiring.crt", d / "expiring.key")
    expiring_ca.write(d / "expiring-ca.crt", d / "expiring-ca.key")
    # history first: Prometheus loads the blocks at start
    tsdb = d / "tsdb"
    backfill_start = time.time() - 40 * 60
    backfill_source, backfill_categories = _backfill(d, tsdb, backfill_start)

    procs: list[Proc] = []
    try:
        procs.append(start_backend(d, ports["b1"], name="b1"))
        cfg = d / "tlsfront.toml"
        cfg.write_text(CONFIG.format(d=d, pki=pki, **ports))
        proxy = start_proxy(d, cfg, [("127.0.0.1", ports[n]) for n in
                                     ("p_main", "p_client", "p_down", "p_legacy", "p_expiring", "p_admin")])
        procs.append(proxy)
        for log in ("error_log", "access_log", "ssl_request_log"):
            (d / log).touch()
        tlslog = Proc("tlslog", [TLSLOG, "follow", str(d / "error_log"), str(d / "ssl_request_log"),
                                 str(d / "access_log"), "--listen", f"127.0.0.1:{ports['p_tlslog']}",
                                 "--poll-interval", "0.1", "--timezone", "UTC"], d)
        procs.append(tlslog)
        wait_listening("127.0.0.1", ports["p_tlslog"], tlslog)
        targets = {"tlsfront": f"127.0.0.1:{ports['p_admin']}", "tlslog": f"127.0.0.1:{ports['p_tlslog']}"}
        prom = Proc("prometheus", [PROMETHEUS, f"--config.file={_prometheus_config(d, targets)}",
                                   f"--storage.tsdb.path={tsdb}",
                                   f"--web.listen-address=127.0.0.1:{ports['p_prom']}"], d)
        procs.append(prom)
        wait_listening("127.0.0.1", ports["p_prom"], prom, timeout=60)
        api = PromAPI(ports["p_prom"])
        wait_prometheus_ready(ports["p_prom"], prom)  # the TSDB, with the backfilled blocks, is open
        _wait("both targets up", lambda: len(api.query("up == 1")) == 2, timeout=60)
        yield dict(d=d, ports=ports, pki=pki, api=api, proxy=proxy, targets=targets,
                   backfill_start=backfill_start, backfill_source=backfill_source,
                   backfill_categories=backfill_categories)
    finally:
        codes = {p.name: p.stop(20) for p in reversed(procs)}
    for p in procs:  # a clean exit, and no traceback on the way
        assert "Traceback" not in p.output(), p.output()
    assert codes.get("tlsfront") == 0 and codes.get("tlslog") == 0, codes
    assert "Traceback" not in (d / "error_log").read_text(errors="replace")


# -- traffic ------------------------------------------------------------------------------------------------------
def _curl(*args: str) -> str:
    r = subprocess.run([CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", *args],
                       capture_output=True, text=True, timeout=30)
    return r.stdout


def _s_client(port: int, *args: str, stdin: bytes = b"") -> str:
    r = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       input=stdin, capture_output=True, timeout=30)
    return r.stdout.decode(errors="replace")


def _plain_http(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: main.test\r\n\r\n")
        return s.recv(1024)


def _traffic(w: dict) -> None:
    p, ca = w["ports"], str(w["pki"].ca_cert)
    for i in range(3):
        assert _curl("--cacert", ca, f"https://127.0.0.1:{p['p_main']}/ok{i}") == "200"
    assert _curl("--cacert", str(w["d"] / "expiring-ca.crt"), f"https://127.0.0.1:{p['p_expiring']}/") == "200"
    # -ign_eof: s_client reads until the proxy closes (HTTP/1.0) instead of hanging up when its
    # standard input ends, which could abort the request before it was answered and logged.
    out = _s_client(p["p_legacy"], "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0", "-ign_eof",
                    stdin=b"GET /legacy HTTP/1.0\r\nHost: legacy.test\r\n\r\n")
    assert "Protocol  : TLSv1\n" in out or "Protocol: TLSv1\n" in out, out[-800:]
    assert "HTTP/1.0 200 " in out or "HTTP/1.1 200 " in out, out[-800:]
    _s_client(p["p_main"], "-tls1_2", "-reconnect", "-CAfile", ca)                 # resumptions
    _s_client(p["p_main"], "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")             # unsupported_protocol
    for _ in range(15):
        _s_client(p["p_main"], "-tls1_2", "-cipher", "AES128-SHA")                  # no_shared_cipher
    assert _curl(f"https://127.0.0.1:{p['p_main']}/") == "000"                      # client_rejected_cert
    for _ in range(40):                                                             # plain HTTP, a spike
        assert _plain_http(p["p_main"]).startswith(b"HTTP/1.")
    for _ in range(2):
        _s_client(p["p_client"], "-tls1_2")                                         # client_cert_missing
    assert _curl("--cacert", ca, f"https://127.0.0.1:{p['p_down']}/") == "502"     # backend down


@pytest.fixture(scope="module")
def scraped(world) -> dict:
    """Run the traffic and a reload; wait until Prometheus has scraped its effects from both programs."""
    api = world["api"]
    # A configuration reload first (the dashboard's annotation and reload panels): it replaces the workers, and
    # a new worker starts with every backend up, so the traffic comes after it.
    os.kill(world["proxy"].pid, signal.SIGHUP)
    _wait("the reload", lambda: api.query('sum(tlsfront_config_reloads_total{result="success"}) >= 2'))
    # A worker of the new generation dies (the master restarts it; tlsfront_worker_restarts_total appears at the
    # first restart). Not an old worker still draining, nor the helper process: the error log names the workers.
    os.kill(_current_worker(world), signal.SIGKILL)
    _wait("the worker restart", lambda: api.query("sum(tlsfront_worker_restarts_total) >= 1"))
    _traffic(world)
    sentinels = [
        'sum(tlsfront_tls_handshake_failures_total{reason="client_cert_missing"}) >= 2',
        'sum(tlsfront_tls_handshake_failures_total{reason="plain_http"}) >= 40',
        'sum(tlsfront_tls_negotiated_total{protocol="TLSv1"}) >= 1',
        'tlsfront_backend_up{vhost=~"down.test:.*"} == 0',
        'sum(tlsfront_config_reloads_total{result="success"}) >= 2',
        'sum(tlslog_events_total{category="client_cert_missing", job="tlslog"}) >= 2',
        'sum(tlslog_events_total{category="backend_unavailable", job="tlslog"}) >= 1',
        'sum(tlslog_tls_requests_total) >= 1',
    ]
    missing = sentinels
    deadline = time.monotonic() + 60
    while missing and time.monotonic() < deadline:
        time.sleep(0.3)
        missing = [s for s in missing if not api.query(s)]
    assert not missing, f"Prometheus never saw: {missing}\n{_log_tails(world)}"
    time.sleep(2.5)  # a few more scrapes, so that the last rate() windows see the final counts
    return world


def _current_worker(w: dict) -> int:
    """The pid of a live worker of the newest generation, from the error log's
    "TLSF0009: worker INDEX/GENERATION started (pid PID)" lines."""
    def find() -> int | None:
        started = re.findall(r"TLSF0009: worker (\d+)/(\d+) started \(pid (\d+)\)",
                             (w["d"] / "error_log").read_text(errors="replace"))
        if not started:
            return None
        newest = max(int(g) for _i, g, _p in started)
        pids = [int(p) for _i, g, p in started if int(g) == newest]
        return next((p for p in pids if Path(f"/proc/{p}").exists()), None)
    return _wait("a worker of the new generation", find)


def _log_tails(w: dict) -> str:
    return "\n".join(f"--- {n} (end):\n" + (w["d"] / n).read_text(errors="replace")[-1500:]
                     for n in ("error_log", "tlslog.out", "tlsfront.out"))


def _metrics_page(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def _values(w: dict) -> dict[str, dict[str, str]]:
    """Grafana's variable values per dashboard, `vhost` left out (see _vhosts): the real instance, every source."""
    api, t = w["api"], w["targets"]
    live_sources = api.get("label/source/values", **{"match[]": 'tlslog_lines_total{job="tlslog"}'})
    assert live_sources
    return {
        "tlsfront.json": {**VALUES, "instance": t["tlsfront"]},
        # a multi-value $source renders as (a|b): the live formats and the backfilled archive's
        "tlslog.json": {**VALUES, "instance": t["tlslog"],
                        "source": "(" + "|".join([*live_sources, w["backfill_source"]]) + ")"},
    }


def _vhosts(w: dict) -> dict[str, list[str]]:
    """The real vhosts, as each dashboard's vhost variable lists them (label_values)."""
    api = w["api"]
    out = {}
    for name, values in _values(w).items():
        sel, label = variable_queries(name)["vhost"]
        out[name] = api.get(f"label/{label}/values", **{"match[]": substitute(sel, values)})
    p = w["ports"]
    assert {f"{v}.test:{p['p_' + v]}" for v in ("main", "client", "down", "legacy", "expiring")} <= set(
        out["tlsfront.json"]), out
    assert f"main.test:{p['p_main']}" in out["tlslog.json"], "tlslog found no event of main.test in the error log"
    return out


# -- the tests ----------------------------------------------------------------------------------------------------
def test_every_panel_query_returns_a_series(scraped) -> None:
    """Each query, with $vhost = All (Grafana's default) and then with each single real vhost: All must return a
    series, and so must at least one single vhost (the vhost filter matches real label values of that metric)."""
    api = scraped["api"]
    values, vhosts = _values(scraped), _vhosts(scraped)
    # Grafana aligns a range to its step; here the last point is "now", where the live data is (it is seconds old).
    end = time.time()
    start = end - RANGE_STEP * (int(end - scraped["backfill_start"]) // RANGE_STEP + 4)

    def run(q, expr: str) -> list:
        return api.query(expr) if q.instant else api.query_range(expr, start, end)

    empty, count = [], 0
    for name in FILES:
        for q in queries(name):
            count += 1
            expr = substitute(q.expr, {**values[name], "vhost": ".*"})
            if not run(q, expr):
                empty.append(f"{q}\n    sent ($vhost = All): {expr}")
            if "$vhost" in q.expr and not any(
                    run(q, substitute(q.expr, {**values[name], "vhost": v})) for v in vhosts[name]):
                empty.append(f"{q}\n    no series for any single vhost of {vhosts[name]}")
    assert count > 60
    assert not empty, f"{len(empty)} of {count} queries returned no series:\n" + "\n".join(empty)


def _panel_query(name: str, title: str) -> Query:
    (q,) = [q for q in queries(name) if q.panel.split(" ", 1)[1] == repr(title)]
    return q


def test_panels_count_what_happened(scraped) -> None:
    """Not only a series: the right numbers, including events whose series appeared only with them (the first
    TLS 1.0 client, the first worker restart, a vhost's first events), which increase() would not count."""
    api, p = scraped["api"], scraped["ports"]
    values = _values(scraped)

    def instant(name: str, title: str) -> dict[tuple, float]:
        q = _panel_query(name, title)
        result = api.query(substitute(q.expr, {**values[name], "vhost": ".*"}))
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in result}

    legacy = instant("tlsfront.json", "Legacy protocol handshakes (TLS 1.0 / 1.1) in the time range")
    assert legacy == {(("protocol", "TLSv1"), ("vhost", f"legacy.test:{p['p_legacy']}")): 1.0}, legacy
    assert instant("tlsfront.json", "Worker restarts in the time range") == {(): 1.0}
    top = {dict(k)["category"]: v for k, v in instant("tlslog.json", "Top categories in the time range").items()}
    want = {"plain_http_on_tls_port": 40, "no_shared_cipher": 15, "client_cert_missing": 2, "protocol_mismatch": 1,
            "client_rejected_cert": 1, "backend_unavailable": 1}
    assert {c: top.get(c) for c in want} == want, top
    tile = instant("tlslog.json", "client_cert_missing")
    assert tile == {(): 2.0}, tile


def test_protocol_panel_shows_each_tlsfront_vhost(scraped) -> None:
    """tlsfront's one ssl_request_log names each line's vhost (its last field), so `tlslog follow` exports
    requests per (vhost, protocol) and the protocol panel draws one series per tlsfront vhost (before, all of them
    were one '-' series); choosing a vhost keeps that vhost's series. The traffic's TLS requests: 3 on main.test
    (curl, TLS 1.3), 1 on legacy.test (s_client -tls1), 1 on expiring.test, 1 on down.test (the 502)."""
    api, p = scraped["api"], scraped["ports"]
    main, legacy = f"main.test:{p['p_main']}", f"legacy.test:{p['p_legacy']}"
    expiring, down = f"expiring.test:{p['p_expiring']}", f"down.test:{p['p_down']}"
    want = {(main, "TLSv1.3"): 3, (legacy, "TLSv1"): 1, (expiring, "TLSv1.3"): 1, (down, "TLSv1.3"): 1}

    def counts() -> dict[tuple[str, str], float]:
        return {(s["metric"]["vhost"], s["metric"]["protocol"]): float(s["value"][1]) for s in api.query(
            'sum by (vhost, protocol) (tlslog_tls_requests_total{job="tlslog"})')}

    try:  # the scraped fixture waited for the first request only: poll until the last scrape has them all
        _wait("every TLS request per vhost", lambda: counts() == want, timeout=15)
    except AssertionError:
        assert counts() == want, (scraped["d"] / "ssl_request_log").read_text()[-2000:]
    q = _panel_query("tlslog.json", "Requests by TLS protocol (ssl_request_log)")
    values = _values(scraped)["tlslog.json"]
    end = time.time()

    def series(vhost: str) -> set[tuple[str, str]]:
        result = api.query_range(substitute(q.expr, {**values, "vhost": vhost}), end - 600, end)
        return {(s["metric"]["vhost"], s["metric"]["protocol"]) for s in result}

    assert series(".*") == set(want)
    assert series(main) == {(main, "TLSv1.3")}
    assert series(legacy) == {(legacy, "TLSv1")}


def test_backfilled_history_is_where_the_panel_looks(scraped) -> None:
    """The "backfilled" query finds the archive's events at their own time (40 minutes ago), not now."""
    api = scraped["api"]
    (q,) = [q for q in queries("tlslog.json") if 'job=""' in q.expr]
    expr = substitute(q.expr, {**_values(scraped)["tlslog.json"], "vhost": ".*"})
    b0 = scraped["backfill_start"]
    result = api.query_range(expr, b0 - 60, b0 + 600)
    assert {s["metric"]["category"] for s in result} == scraped["backfill_categories"]
    assert not api.query_range(expr, time.time() - 300, time.time())  # nothing backfilled lands in the present


def test_every_metric_name_is_exported(scraped) -> None:
    p = scraped["ports"]
    exported = (_metrics_page(f"http://127.0.0.1:{p['p_admin']}/metrics")
                | _metrics_page(f"http://127.0.0.1:{p['p_tlslog']}/metrics"))
    unknown = {}
    for name in FILES:
        for q in queries(name):
            missing = metric_names(q.expr) - exported
            if missing:
                unknown[str(q)] = sorted(missing)
    rules = [r for g in yaml.safe_load((CONF / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    for r in rules:
        missing = metric_names(r["expr"]) - exported - {"up"}
        if missing:
            unknown[f"alert {r['alert']}"] = sorted(missing)
    assert not unknown, f"names neither tlsfront nor tlslog exports: {unknown}"
    # the check has teeth: a misspelt name is not exported
    assert not {"tlsfront_http_request_total", "tlslog_event_total"} & exported


def test_variables_find_the_vhost_and_instance(scraped) -> None:
    api = scraped["api"]
    values, vhosts = _values(scraped), _vhosts(scraped)
    for name in FILES:
        for var, (sel, label) in variable_queries(name).items():
            found = api.get(f"label/{label}/values", **({"match[]": substitute(sel, values[name])} if sel else {}))
            if var == "instance":
                assert found == [values[name]["instance"]], (name, found)
            elif var == "vhost":
                assert found == vhosts[name] and found, (name, found)
            else:
                assert found, (name, var)


def test_alert_rules_evaluate_and_the_provoked_ones_are_pending(scraped) -> None:
    api = scraped["api"]
    port_down = scraped["ports"]["p_down"]

    def rules_evaluated():
        rules = [r for g in api.get("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = _wait("every rule evaluated", rules_evaluated)
    assert {r["name"] for r in rules} == {r["alert"] for g in yaml.safe_load(
        (CONF / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, bad
    want = {("TLSBackendDown", f"down.test:{port_down}"),
            ("TLSCertificateExpiringSoon", f"expiring.test:{scraped['ports']['p_expiring']}"),
            ("TLSPlainHTTPOnTLSPortSpike", f"main.test:{scraped['ports']['p_main']}"),
            ("TLSHandshakeFailureRatioHigh", f"main.test:{scraped['ports']['p_main']}")}

    def active():
        return {(a["labels"]["alertname"], a["labels"].get("vhost", "")) for a in api.get("alerts")["alerts"]
                if a["state"] in ("pending", "firing")}

    got = _wait(f"alerts {sorted(want)} pending", lambda: active() if want <= active() else None, timeout=15)
    # not provoked: both programs answer, the follower reads its files without error, the reload succeeded, one
    # worker restart is no crash loop
    assert not {a for a, _v in got} & {"TLSFrontDown", "TLSLogDown", "TLSLogNotReading", "TLSFrontReloadFailed",
                                       "TLSFrontWorkersRestarting"}, got
