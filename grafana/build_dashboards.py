"""Build grafana/dashboards/tlsfront.json and tlslog.json from the tables below.

The dashboards are data: each panel is one row of a table (title, queries, unit, size, description), and the
functions here turn the rows into Grafana's dashboard JSON (schemaVersion 39, see grafana/README.md). Writing the
JSON by hand would repeat the datasource, the grid arithmetic and the variable filters in every panel; here they
are written once, so every panel and every target goes through the ``${datasource}`` variable and every selector
carries the ``$instance`` / ``$vhost`` filters. The remedies in the tlslog panels' descriptions come from
``tlslog.catalog`` (the same text as ``tlslog catalog``), so they cannot drift apart.

Usage (from the repository root, with the project's venv)::

    .venv/bin/python grafana/build_dashboards.py          # rewrite both files
    .venv/bin/python grafana/build_dashboards.py --check  # exit 1 if a committed file differs

tests/grafana/test_dashboards.py fails when the committed JSON is not what this script writes.

Grid: 24 columns; heights in units of 30 px. On a 1366x768 or 1440x900 laptop a row of two 12-wide, 8-high
time series fits with the row above it, so each section is read without scrolling sideways.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlslog.catalog import CATALOG, CATEGORIES

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

SCHEMA_VERSION = 39  # Grafana 10.3 .. 11.x write this version; newer ones migrate it on load
DATASOURCE_UID = "tlsfront-prometheus"  # grafana/provisioning/datasources/prometheus.yml
DS = {"type": "prometheus", "uid": "${datasource}"}

# tlsfront's handshake failure reasons (tlsfront.tlserrors.REASONS) -> tlslog's catalog category with the remedy.
# `not_tls` has no catalog entry: bytes that are neither TLS nor HTTP are scanners or another protocol.
REASON_CATEGORY: dict[str, str | None] = {
    "no_shared_cipher": "no_shared_cipher",
    "unsupported_protocol": "protocol_mismatch",
    "client_rejected_cert": "client_rejected_cert",
    "client_cert_missing": "client_cert_missing",
    "client_cert_invalid": "client_cert_invalid",
    "plain_http": "plain_http_on_tls_port",
    "not_tls": None,
    "timeout": "handshake_timeout",
    "eof": "handshake_eof_or_reset",
    "other": "other_tls_error",
}
NOT_TLS_REMEDY = ("Bytes that are neither TLS nor HTTP: port scanners, health checks speaking another protocol, or "
                  "a client configured for another service on this port. Act only if the rate is high: find the "
                  "peers in the error log.")


# -- building blocks -------------------------------------------------------------------------------------------
@dataclass
class Target:
    expr: str
    legend: str = "__auto"
    instant: bool = False
    table: bool = False  # format "table" (instant tables)


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | stat | table | bargauge
    targets: list[Target]
    w: int
    h: int
    unit: str = "short"
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)  # fieldConfig.defaults.custom
    defaults: dict[str, Any] = field(default_factory=dict)  # more fieldConfig.defaults (thresholds, mappings...)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


GREEN = thresholds((None, "green"))
STACKED_BARS = {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal", "group": "A"},
                "lineWidth": 1}
LINES = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never", "spanNulls": False}


def _legend(calcs: list[str] | None = None) -> dict[str, Any]:
    # A table legend with the mean and last value: series names are long (vhost + label), values say which matters.
    return {"showLegend": True, "displayMode": "table", "placement": "bottom",
            "calcs": calcs if calcs is not None else ["mean", "lastNotNull"]}


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit, "color": {"mode": "palette-classic"}, "thresholds": GREEN,
                                "mappings": []}
    if p.kind == "timeseries":
        defaults["custom"] = {**LINES, **p.custom}
    elif p.custom:
        defaults["custom"] = dict(p.custom)
    defaults.update(p.defaults)
    if p.kind in ("stat", "bargauge", "table") and "color" not in p.defaults:
        defaults["color"] = {"mode": "thresholds"}
    options: dict[str, Any]
    if p.kind == "timeseries":
        options = {"legend": _legend(), "tooltip": {"mode": "multi", "sort": "desc"}}
    elif p.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
                   "textMode": "auto"}
    elif p.kind == "bargauge":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                   "valueMode": "color", "namePlacement": "auto"}
    else:  # table
        options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"],
                                                                      "fields": ""}}
    options.update(p.options)
    targets = []
    for i, t in enumerate(p.targets):
        tj: dict[str, Any] = {"datasource": DS, "refId": chr(ord("A") + i), "expr": t.expr,
                              "legendFormat": t.legend, "range": not t.instant, "instant": t.instant,
                              "editorMode": "code"}
        if t.table:
            tj["format"] = "table"
        targets.append(tj)
    out: dict[str, Any] = {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description, "datasource": DS,
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": p.overrides},
        "options": options, "targets": targets,
    }
    if p.transformations:
        out["transformations"] = p.transformations
    return out


def _variable_query(name: str, label: str, query: str, description: str, include_empty: bool = False) -> dict:
    return {
        "name": name, "label": label, "type": "query", "description": description,
        # The classic string form: every Grafana version parses it (migrateVariableQueryToEditor); the object
        # form's fields (qryType, label, metric) changed between 10.x releases.
        "datasource": DS, "query": query,
        "definition": query, "refresh": 2,  # on time range change: new vhosts appear without a reload
        "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "regex": "", "skipUrlSync": False, "sort": 1, "hide": 0,
    }


def dashboard(uid: str, title: str, description: str, tags: list[str], variables: list[dict], rows: list[Row],
              annotations: list[dict] | None = None) -> dict[str, Any]:
    """Lay the rows out on the 24-column grid (panels left to right, wrapping) and wrap them in a dashboard."""
    panels: list[dict[str, Any]] = []
    pid = 0
    y = 0
    for row in rows:
        pid += 1
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        x = 0
        line_h = 0
        for p in row.panels:
            if x + p.w > 24:
                x, y, line_h = 0, y + line_h, 0
            pid += 1
            panels.append(_panel_json(p, pid, x, y))
            x += p.w
            line_h = max(line_h, p.h)
        y += line_h
    ds_var = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
              "description": "The Prometheus that scrapes tlsfront and tlslog (conf/prometheus.yml).",
              "current": {"selected": False, "text": "Prometheus (tlsfront)", "value": DATASOURCE_UID},
              "options": [], "refresh": 1, "regex": "", "includeAll": False, "multi": False, "hide": 0,
              "skipUrlSync": False}
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
               "type": "dashboard"}
    return {
        "uid": uid, "title": title, "description": description, "tags": tags,
        "id": None, "version": 1, "schemaVersion": SCHEMA_VERSION, "editable": True,
        "graphTooltip": 1,  # shared crosshair: a spike in one panel lines up with the others
        "timezone": "browser", "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m", "1h"]},
        "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "links": [{"title": "tlsfront dashboards", "type": "dashboards", "tags": ["tlsfront"], "asDropdown": False,
                   "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "annotations": {"list": [builtin, *(annotations or [])]},
        "templating": {"list": [ds_var, *variables]},
        "panels": panels,
    }


# -- tlsfront --------------------------------------------------------------------------------------------------
S = '{instance=~"$instance", vhost=~"$vhost"}'  # the selector of per-vhost series
SI = '{instance=~"$instance"}'  # per-process series (no vhost label)
RI = "$__rate_interval"


def sel(extra: str = "") -> str:
    """The per-vhost selector with extra matchers: sel('reason="eof"')."""
    return S if not extra else S[:-1] + ", " + extra + "}"


def rate(metric: str, extra: str = "", by: str | None = None, fn: str = "rate", window: str = RI) -> str:
    inner = f"{fn}({metric}{sel(extra)}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def counted(series: str, by: str | None = None, window: str = "$__range") -> str:
    """Events counted in the window, new series included: ``now - (then or now * 0)``, clamped at 0.

    ``increase()`` only sees what a series gained between its samples, so a series that appears with value 1
    (the first TLS 1.0 client of a vhost, the first worker restart, a category's first event on a vhost) adds
    nothing: exactly the rare events these panels exist for. Here a label set absent at the window's start
    counts from zero. Cost: a counter reset (restart without --positions) reads as 0 for one window.
    """
    agg = f"sum by ({by})" if by else "sum"
    now = f"{agg} ({series})"
    return f"clamp_min({now} - ({agg} ({series} offset {window}) or {now} * 0), 0)"


def quantiles(metric: str, what: str) -> list[Target]:
    return [Target(f"histogram_quantile({q}, sum by (vhost, le) (rate({metric}_bucket{S}[{RI}])))",
                   f"{{{{vhost}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]


def _reason_remedies() -> str:
    lines = ["Failed handshakes per second by reason (tlsfront's fixed set; the error log has one line per failure "
             "with the client and OpenSSL's text). What to do, by reason:", ""]
    for reason, cat in REASON_CATEGORY.items():
        remedy = CATALOG[cat].remedy if cat else NOT_TLS_REMEDY
        lines.append(f"* **{reason}**: {remedy}")
    lines += ["", "Remedies from `tlslog catalog` (the mod_ssl FAQ where it has an answer); the directive names are "
              "Apache's, tlsfront's equivalents are in tlsfront.toml's [tls] and [[vhost]] tables."]
    return "\n".join(lines)


NOT_HANDSHAKES = 'reason!~"plain_http|not_tls"'  # plain HTTP and non-TLS bytes: not TLS clients failing
FAIL_RATIO = (rate("tlsfront_tls_handshake_failures_total", NOT_HANDSHAKES, by="vhost")
              + " / " + rate("tlsfront_tls_handshakes_total", by="vhost"))
FAIL_RATIO_ALL = (rate("tlsfront_tls_handshake_failures_total", NOT_HANDSHAKES)
                  + " / " + rate("tlsfront_tls_handshakes_total"))
OK = 'result="ok"'
UPDOWN = [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0},
                                        "1": {"text": "UP", "color": "green", "index": 1}}}]
OKFAIL = [{"type": "value", "options": {"0": {"text": "FAILED", "color": "red", "index": 0},
                                        "1": {"text": "OK", "color": "green", "index": 1}}}]


def tlsfront_dashboard() -> dict[str, Any]:
    overview = Row("Overview", [
        Panel("Requests/s", "stat", [Target(rate("tlsfront_http_requests_total"), "requests/s")], 4, 4, "reqps",
              "HTTP requests answered per second, all selected vhosts."),
        Panel("Handshake failure ratio", "stat", [Target(FAIL_RATIO_ALL, "failed")], 4, 4, "percentunit",
              "Failed TLS handshakes / all handshakes (plain HTTP and non-TLS bytes left out: they are not TLS "
              "clients failing). The alert TLSHandshakeFailureRatioHigh fires above 10% for 10 minutes.",
              defaults={"thresholds": thresholds((None, "green"), (0.05, "orange"), (0.1, "red")),
                        "decimals": 1}),
        Panel("Backends down", "stat",
              [Target(f"count(tlsfront_backend_up{S} == 0) or vector(0)", "down")], 4, 4, "none",
              "Backends tlsfront has marked down now (requests to them get 502/504). Alert: TLSBackendDown.",
              defaults={"thresholds": thresholds((None, "green"), (1, "red"))}),
        Panel("Soonest certificate expiry", "stat",
              [Target(f"min(tlsfront_certificate_expiry_timestamp_seconds{S} - time()) / 86400", "days left")],
              4, 4, "none",
              "Days until the first of the served certificates expires. Alert TLSCertificateExpiringSoon at 14 "
              "days: renew, install, `tlsfront check`, `systemctl reload tlsfront`.",
              defaults={"thresholds": thresholds((None, "red"), (14, "orange"), (30, "green")), "decimals": 1}),
        Panel("Worker restarts in the time range", "stat",
              [Target(counted(f"tlsfront_worker_restarts_total{SI}"), "restarts")], 4, 4, "none",
              "Worker processes the master restarted after they died, in the time range. Any is worth a look "
              "at the error log (the worker's last lines and exit status).",
              defaults={"thresholds": thresholds((None, "green"), (1, "orange")), "decimals": 0}),
        Panel("Last configuration load", "stat",
              [Target(f"min(tlsfront_config_last_reload_successful{SI})", "last load")], 4, 4, "none",
              "Whether the last configuration (re)load succeeded. After a failed `systemctl reload tlsfront` "
              "the old configuration keeps serving; `tlsfront check -c CONFIG` names the problem.",
              defaults={"mappings": OKFAIL, "thresholds": thresholds((None, "red"), (1, "green"))},
              options={"graphMode": "none"}),
    ])
    traffic = Row("Traffic and latency per vhost", [
        Panel("Requests/s by vhost and status class", "timeseries",
              [Target(rate("tlsfront_http_requests_total", by="vhost, code"), "{{vhost}} {{code}}")], 12, 8,
              "reqps", "HTTP requests answered per second, by vhost and status class (5xx from tlsfront itself: "
              "502 backend refused/reset, 504 backend timeout; see Backends)."),
        Panel("Request latency (p50, p95, p99)", "timeseries", quantiles("tlsfront_http_request_duration_seconds",
                                                                         "request"), 12, 8, "s",
              "From the request line to the last response byte, per vhost (histogram_quantile over "
              "tlsfront_http_request_duration_seconds; buckets 1 ms .. 60 s)."),
        Panel("Bytes/s by vhost", "timeseries", [
            Target(rate("tlsfront_http_request_bytes_total", by="vhost"), "{{vhost}} received"),
            Target(rate("tlsfront_http_response_bytes_total", by="vhost"), "{{vhost}} sent")], 12, 8, "Bps",
              "Request bytes received from clients and response bytes sent to them (headers and bodies)."),
        Panel("Connections by vhost", "timeseries", [
            Target(f"sum by (vhost) (tlsfront_connections_active{S})", "{{vhost}} open"),
            Target(rate("tlsfront_connections_total", by="vhost"), "{{vhost}} new/s")], 12, 8, "short",
              "Client connections open now, and new connections per second."),
    ])
    handshakes = Row("TLS handshakes", [
        Panel("Handshakes/s by vhost and result", "timeseries",
              [Target(rate("tlsfront_tls_handshakes_total", by="vhost, result"), "{{vhost}} {{result}}")], 12, 8,
              "ops", "TLS handshakes per second by vhost and result (ok, failed)."),
        Panel("Handshake failure ratio by vhost", "timeseries", [Target(FAIL_RATIO, "{{vhost}}")], 12, 8,
              "percentunit",
              "Failed / all handshakes per vhost, plain HTTP and non-TLS bytes left out. The red line is the "
              "alert threshold (10% for 10 minutes, TLSHandshakeFailureRatioHigh).",
              custom={"thresholdsStyle": {"mode": "line"}},
              defaults={"thresholds": thresholds((None, "green"), (0.1, "red")), "min": 0}),
        Panel("Handshake failures by reason", "timeseries",
              [Target(rate("tlsfront_tls_handshake_failures_total", by="reason") + " > 0", "{{reason}}")], 12, 8,
              "ops", _reason_remedies(), custom=STACKED_BARS),
        Panel("Clients rejecting our certificate, by alert", "timeseries",
              [Target(rate("tlsfront_tls_handshake_failures_total", 'reason="client_rejected_cert"',
                           by="vhost, alert"), "{{vhost}} {{alert}}")], 12, 8, "ops",
              "The TLS alert the client sent when it refused the certificate: unknown_ca (a CA it does not "
              "trust, or a missing intermediate: serve the chain), certificate_expired (renew), bad_certificate "
              "/ certificate_unknown (name mismatch, pinned certificate). Remedy: "
              + CATALOG["client_rejected_cert"].remedy),
        Panel("Handshake latency (p50, p95, p99)", "timeseries",
              quantiles("tlsfront_tls_handshake_duration_seconds", "handshake"), 12, 8, "s",
              "From the first ClientHello byte to the end of a successful handshake, per vhost. RSA keys and "
              "a missing session cache make it grow; slow clients too."),
        Panel("Session resumption ratio and cache misses", "timeseries", [
            Target(rate("tlsfront_tls_resumptions_total", by="vhost") + " / "
                   + rate("tlsfront_tls_handshakes_total", OK, by="vhost"), "{{vhost}} resumed"),
            Target(rate("tlsfront_tls_session_cache_misses_total", by="vhost") + " / "
                   + rate("tlsfront_tls_handshakes_total", OK, by="vhost"), "{{vhost}} offered, not resumed")],
              12, 8, "percentunit",
              "Share of successful handshakes that resumed a session (ID, ticket or TLS 1.3 PSK), and share "
              "where the client offered a session that was not resumed (a cache miss: per-worker caches, a "
              "too-small cache, ticket keys rotated or not shared across workers).",
              defaults={"min": 0}),
    ])
    protocols = Row("Protocols and ciphers: who still uses TLS 1.0?", [
        Panel("Protocol mix", "timeseries",
              [Target(rate("tlsfront_tls_negotiated_total", by="protocol"), "{{protocol}}")], 8, 8, "percentunit",
              "Share of successful handshakes per negotiated protocol version (stacked to 100%).",
              custom={"stacking": {"mode": "percent", "group": "A"}, "fillOpacity": 60}),
        Panel("Legacy protocol handshakes (TLS 1.0 / 1.1) in the time range", "bargauge",
              [Target("sort_desc(" + counted("tlsfront_tls_negotiated_total"
                                             + sel('protocol=~"SSLv3|TLSv1|TLSv1.1"'), "vhost, protocol") + ")",
                      "{{vhost}} {{protocol}}", instant=True)], 8, 8, "none",
              "Handshakes per vhost that still negotiated SSLv3, TLS 1.0 or 1.1 in the time range: the clients "
              "that break when insecure_legacy_protocols is turned off. Empty: nobody did. The error log names "
              "the client addresses.",
              defaults={"thresholds": thresholds((None, "orange")), "decimals": 0}),
        Panel("Cipher mix in the time range", "table",
              [Target("sort_desc(" + counted(f"tlsfront_tls_negotiated_total{S}", "vhost, protocol, cipher") + ")",
                      instant=True, table=True)], 8, 8, "none",
              "Successful handshakes per vhost, protocol and cipher in the time range (at most 128 distinct "
              "ciphers, then 'other'). Before removing a cipher, check that its count is zero.",
              defaults={"decimals": 0},
              transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                               "renameByName": {"Value": "handshakes"}}}]),
    ])
    backends = Row("Backends", [
        Panel("Backend up / down", "stat",
              [Target(f"max by (vhost, backend) (tlsfront_backend_up{S})", "{{vhost}} → {{backend}}")], 6, 8,
              "none", "tlsfront's view of each backend: DOWN after connections are refused, reset or time out; "
              "UP again when it answers. Remedy for DOWN: " + CATALOG["backend_unavailable"].remedy,
              defaults={"mappings": UPDOWN, "thresholds": thresholds((None, "red"), (1, "green"))},
              options={"graphMode": "none", "textMode": "value_and_name"}),
        Panel("Backend requests/s", "timeseries",
              [Target(rate("tlsfront_backend_requests_total", by="vhost, backend"), "{{vhost}} → {{backend}}")],
              6, 8, "reqps", "Requests sent to each backend per second."),
        Panel("Backend errors/s by kind", "timeseries",
              [Target(rate("tlsfront_backend_errors_total", by="vhost, backend, kind") + " > 0",
                      "{{vhost}} → {{backend}} {{kind}}")], 6, 8, "ops",
              "Backend failures: refused and reset (502 to the client; remedy: "
              + CATALOG["backend_unavailable"].remedy + ") and timeout (504; remedy: "
              + CATALOG["backend_timeout"].remedy + ")", custom=STACKED_BARS),
        Panel("Backend connections in use", "timeseries",
              [Target(f"sum by (vhost, backend) (tlsfront_backend_connections_in_use{S})",
                      "{{vhost}} → {{backend}}")], 6, 8, "short",
              "Pooled backend connections carrying a request now: near the pool size, requests queue."),
    ])
    certs = Row("Certificates", [
        Panel("Days until each certificate expires", "table",
              [Target(f"sort(min by (vhost, subject_cn, serial) "
                      f"(tlsfront_certificate_expiry_timestamp_seconds{S} - time()) / 86400)",
                      instant=True, table=True)], 24, 6, "none",
              "Every certificate tlsfront serves, by vhost, subject CN and serial, soonest first. Red: under 14 "
              "days (the TLSCertificateExpiringSoon alert). Remedy: renew it, install it with its chain at "
              "the configured paths, `tlsfront check -c CONFIG`, then `systemctl reload tlsfront` (SIGHUP, no "
              "connection dropped).",
              defaults={"decimals": 1, "thresholds": thresholds((None, "red"), (14, "orange"), (30, "green"))},
              overrides=[{"matcher": {"id": "byName", "options": "days left"},
                          "properties": [{"id": "custom.cellOptions", "value": {"type": "color-background"}}]}],
              transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                               "renameByName": {"Value": "days left"}}}]),
    ])
    process = Row("Process: workers and reloads", [
        Panel("Worker restarts", "timeseries",
              [Target(counted(f"tlsfront_worker_restarts_total{SI}", "instance", RI),
                      "{{instance}} restarts")], 8, 7, "none",
              "Worker processes the master restarted after they died (with back-off). A steady rate is a crash "
              "loop: read the error log around the restarts.", custom=STACKED_BARS),
        Panel("Configuration reloads by result", "timeseries",
              [Target(counted(f"tlsfront_config_reloads_total{SI}", "instance, result", RI),
                      "{{instance}} {{result}}")], 8, 7, "none",
              "Reloads (SIGHUP, `systemctl reload tlsfront`) by result. A failure keeps the old configuration "
              "serving; `tlsfront check -c CONFIG` names the problem.", custom=STACKED_BARS),
        Panel("Versions and last successful load", "table", [
            Target(f"max by (instance, version, python, twisted, pyopenssl, cryptography, openssl) "
                   f"(tlsfront_build_info{SI})", instant=True, table=True),
            Target(f"max by (instance) (tlsfront_config_last_reload_success_timestamp_seconds{SI}) * 1000",
                   instant=True, table=True)], 8, 7, "none",
              "tlsfront_build_info (versions in use: OpenSSL's matters for protocol and cipher support) and the "
              "time of the last successful configuration load.",
              overrides=[{"matcher": {"id": "byName", "options": "last successful load"},
                          "properties": [{"id": "unit", "value": "dateTimeAsIso"}]}],
              transformations=[{"id": "merge", "options": {}},
                               {"id": "organize", "options": {"excludeByName": {"Time": True, "Value #A": True},
                                                              "renameByName": {"Value #B": "last successful load"}}}]),
    ])
    variables = [
        _variable_query("instance", "Instance", "label_values(tlsfront_build_info, instance)",
                        "tlsfront processes (scrape targets of the tlsfront job)."),
        _variable_query("vhost", "Virtual host", f"label_values(tlsfront_connections_total{SI}, vhost)",
                        "vhost labels (server_name:port) of the selected instances."),
    ]
    reloads = {"name": "Configuration reloads", "enable": True, "hide": False, "iconColor": "blue",
               "datasource": DS, "expr": f"changes(tlsfront_config_last_reload_success_timestamp_seconds{SI}[1m]) > 0",
               "step": "1m", "titleFormat": "configuration reloaded", "textFormat": "{{instance}}",
               "useValueForTime": False}
    return dashboard(
        "tlsfront-overview", "tlsfront",
        "tlsfront TLS reverse proxy: traffic, handshakes and why they fail, protocols and ciphers, backends, "
        "certificates, workers. Metrics: docs/metrics.md.",
        ["tlsfront"], variables, [overview, traffic, handshakes, protocols, backends, certs, process],
        annotations=[reloads])


# -- tlslog ----------------------------------------------------------------------------------------------------
# Events with no vhost in their log line (server-wide: startup, key, pass phrase, PRNG, mutex problems; and the
# pre-initialised zeros) belong to every vhost, so the vhost filter keeps them: `vhost=~"$vhost|"`.
L = '{instance=~"$instance", vhost=~"$vhost|", source=~"$source"}'
LS = '{instance=~"$instance", source=~"$source"}'  # per-source series (no vhost label)
LI = '{instance=~"$instance"}'


def lsel(extra: str) -> str:
    return L[:-1] + ", " + extra + "}"


def _category_text(name: str) -> str:
    c = CATALOG[name]
    return f"**{name}**: {c.description}.\n\n**Remedy**: {c.remedy}\n\n*Source*: {c.source}"


def _top_categories_text() -> str:
    lines = ["Events per category in the time range, most frequent first. What each means and what to do "
             "(`tlslog catalog`):", ""]
    for name in CATEGORIES:
        c = CATALOG[name]
        lines.append(f"* **{name}** ({c.description}): {c.remedy}")
    return "\n".join(lines)


def tlslog_dashboard() -> dict[str, Any]:
    events = Row("Events", [
        Panel("Events per category over time (live and backfilled)", "timeseries", [
            Target(counted(f"tlslog_events_total{L}", "category", RI) + " > 0", "{{category}}"),
            Target(f'sum by (category) (increase(tlslog_events_total{{job="", source=~"$source"}}[{RI}])) > 0',
                   "{{category}} (backfilled)")], 16, 9, "none",
              "A: events counted live by `tlslog follow` (job tlslog), per category. B: history imported from "
              "archived logs with `tlslog backfill` + `promtool tsdb create-blocks-from openmetrics` (those "
              "series carry no job, instance or vhost label, so only the source filter applies to them; "
              "docs/backfill.md). For backfilled history, pick a time range in the past and a "
              "`$__rate_interval` of at least twice the backfill --step. Hover a category in the panel on the "
              "right, or a tile below, for its remedy.",
              custom=STACKED_BARS),
        Panel("Top categories in the time range", "bargauge",
              [Target("sort_desc(" + counted(f"tlslog_events_total{L}", "category") + " > 0)",
                      "{{category}}", instant=True)], 8, 9, "none", _top_categories_text(),
              defaults={"thresholds": thresholds((None, "orange")), "decimals": 0}),
    ])
    tiles = Row("Events per category in the time range (hover ⓘ for the remedy)", [
        Panel(name, "stat", [Target(counted("tlslog_events_total" + lsel(f'category="{name}"')), "events")],
              4, 4, "none", _category_text(name),
              defaults={"thresholds": thresholds((None, "green"), (1, "orange")), "decimals": 0},
              options={"graphMode": "area"})
        for name in CATEGORIES
    ])
    reading = Row("Reading the logs", [
        Panel("Lines read/s by source", "timeseries",
              [Target(f"sum by (source) (rate(tlslog_lines_total{LS}[{RI}]))", "{{source}}")], 8, 8, "short",
              "Log lines read per second, by detected format (source). Flat at zero while the server logs: the "
              "follower is stuck or follows the wrong files (alert TLSLogNotReading)."),
        Panel("Unparsed-line ratio by source", "timeseries",
              [Target(f"sum by (source) (rate(tlslog_unparsed_lines_total{LS}[{RI}])) / "
                      f"sum by (source) (rate(tlslog_lines_total{LS}[{RI}]))", "{{source}}")], 8, 8,
              "percentunit",
              "Share of lines the detected format did not understand. A few percent is normal (module lines, "
              "multi-line dumps); a high ratio means the format was detected wrongly or the server's LogFormat "
              "/ ErrorLogFormat was changed: give --input-format, and report the line.",
              defaults={"min": 0}),
        Panel("Files followed, read errors and rotations", "stat", [
            Target(f"sum(tlslog_files_followed{LI})", "files followed"),
            Target(counted(f"tlslog_read_errors_total{LI}"), "read errors"),
            Target(counted(f"tlslog_rotations_total{LI}", "kind"), "{{kind}} rotations")],
              8, 8, "none",
              "Files open now (followed, or drained after a rotation), problems opening or reading files in the "
              "time range (the file and reason are on tlslog's standard error), and rotations seen by kind. "
              "Zero files or growing errors: alert TLSLogNotReading; check the PATH patterns and permissions.",
              defaults={"decimals": 0}, options={"textMode": "value_and_name", "graphMode": "none"}),
    ])
    last = Row("Last events and requests", [
        Panel("Last event per category", "table", [
            Target(f"max by (category) (tlslog_last_event_timestamp_seconds{LI}) * 1000", instant=True,
                   table=True),
            Target(f"time() - max by (category) (tlslog_last_event_timestamp_seconds{LI})", instant=True,
                   table=True)], 12, 9, "none",
              "When each category was last seen (the event's own timestamp in the log) and how long ago: a "
              "category that stopped after a change is fixed; one that goes on is not.",
              overrides=[{"matcher": {"id": "byName", "options": "last event"},
                          "properties": [{"id": "unit", "value": "dateTimeAsIso"}]},
                         {"matcher": {"id": "byName", "options": "ago"},
                          "properties": [{"id": "unit", "value": "s"}]}],
              transformations=[{"id": "merge", "options": {}},
                               {"id": "organize", "options": {"excludeByName": {"Time": True},
                                                              "renameByName": {"Value #A": "last event",
                                                                               "Value #B": "ago"}}},
                               {"id": "sortBy", "options": {"sort": [{"field": "ago", "desc": False}]}}]),
        Panel("Requests by TLS protocol (ssl_request_log)", "timeseries",
              [Target(f'sum by (vhost, protocol) (rate(tlslog_tls_requests_total{{instance=~"$instance", '
                      f'vhost=~"$vhost|-|"}}[{RI}]))', "{{vhost}} {{protocol}}")], 6, 9, "reqps",
              "Requests per vhost and TLS protocol version read from ssl_request_log (Apache's, or tlsfront's): "
              "who still uses TLS 1.0, and on which vhost, before SSLProtocol drops it. tlsfront's lines end "
              "with the vhost (server_name:port); mod_ssl's default format names none (one file per vhost; "
              "label '-'): those requests are shown whatever the vhost filter. "
              + CATALOG["protocol_mismatch"].remedy,
              custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 60}),
        Panel("Requests by status class (access logs)", "timeseries",
              [Target(f"sum by (status_class) (rate(tlslog_requests_total{LI}[{RI}]))", "{{status_class}}")],
              6, 9, "reqps", "Requests per status class read from access logs (and HAProxy httplog lines)."),
    ])
    variables = [
        _variable_query("instance", "Instance", "label_values(tlslog_lines_total, instance)",
                        "tlslog follow processes (scrape targets of the tlslog job)."),
        _variable_query("vhost", "Virtual host", f"label_values(tlslog_events_total{LI}, vhost)",
                        "vhosts named by the log lines (beyond --max-vhosts: 'other'). Events whose line names no "
                        "vhost (server-wide) are always shown."),
        _variable_query("source", "Log format", f"label_values(tlslog_lines_total{LI}, source)",
                        "The detected format of the followed logs (apache, tlsfront, nginx, haproxy, ...)."),
    ]
    return dashboard(
        "tlslog-events", "tlslog: TLS and proxy errors from logs",
        "TLS and proxy error events that tlslog finds in tlsfront, Apache, nginx and HAProxy logs: per category "
        "over time (live and backfilled), with each category's remedy; how well the logs are read.",
        ["tlsfront", "tlslog"], variables, [events, tiles, reading, last])


DASHBOARDS = {"tlsfront.json": tlsfront_dashboard, "tlslog.json": tlslog_dashboard}


def render(build) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("build_dashboards: out of date (run .venv/bin/python grafana/build_dashboards.py): "
              + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
