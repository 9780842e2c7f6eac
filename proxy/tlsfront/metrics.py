"""tlsfront's Prometheus metrics: a plain in-memory store, exported by a custom collector.

Why not ``prometheus_client.Counter(...).labels(...).inc()`` per event: that is
a dict lookup, a lock and a method call per label set (about 1 µs); the data
path calls these methods several times per request.  Here every event is one
or two ``dict[key] += n`` on tuples of strings (tenths of a µs), and the
Prometheus families are built from the store only when /metrics is scraped
(prometheus_client's "custom collector" pattern; see its docs).  The store is
a plain dict of numbers, so counts from several worker processes are summed by
merging snapshots (`Metrics.snapshot`, `merge_snapshots`, `SnapshotCollector`):
see docs/metrics.md.

Usage (the data path)::

    registry = CollectorRegistry()
    m = Metrics(vhosts=config.vhosts)     # pre-initialises every vhost x reason to 0
    registry.register(m.collector())
    m.connection_opened("www.example.test:443")
    m.handshake_ok("www.example.test:443", "TLSv1.3", "TLS_AES_128_GCM_SHA256", resumed=False, seconds=0.002)
    m.request_done("www.example.test:443", 200, 0.012, bytes_in=120, bytes_out=512, quirks=())
    m.connection_closed("www.example.test:443")

Labels are bounded by construction: ``vhost`` is `VHost.label`, ``backend`` is
``host:port`` of a configured backend, ``reason`` is from `tlserrors.REASONS`,
``alert`` from `tlserrors.KNOWN_ALERTS`, ``protocol``/``cipher`` are OpenSSL's
names (anything unexpected becomes ``other``; at most `MAX_CIPHER_LABELS`
distinct ciphers).  Never a client IP, User-Agent, SNI or path.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tlsfront.tlserrors import CERT_ALERTS, KNOWN_ALERTS, REASONS, HandshakeFailure

PREFIX = "tlsfront_"

# OpenSSL's SSL_get_version names. Anything else (should not happen) -> "other".
PROTOCOLS = frozenset(("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"))
# `protocol` of a *failed* handshake: the highest version the ClientHello offered
# (sniff.ClientHello.max_version_name), or "unknown" when no ClientHello was parsed
# (plain HTTP, junk, half a hello, timeout before it). What an operator needs before
# turning TLS 1.0 off: who still *tries* it, not only who succeeds.
FAILED_PROTOCOLS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "unknown")
MAX_CIPHER_LABELS = 128
BACKEND_ERROR_KINDS = ("refused", "reset", "timeout")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Requests the proxy answers itself without forwarding them (issue 11: "rejected,
# logged, counted"): the status it answered -> `reason` of
# tlsfront_http_rejected_requests_total. A fixed set (docs/metrics.md); any other
# status counts as "other". "plain_http" is given by the TLS listener (400 to
# plain HTTP on a TLS port; its redirect mode is an answer, not a rejection).
REJECT_REASONS: dict[int, str] = {
    400: "bad_request",             # malformed request line/headers, bad Host, bad framing
    405: "method_not_allowed",      # CONNECT and friends (http1._UNSUPPORTED_METHODS)
    408: "timeout",                 # request head or body too slow (model.Timeouts)
    413: "body_too_large",          # limits.max_body_bytes
    414: "uri_too_long",            # request target too long
    417: "expectation_failed",      # Expect other than 100-continue
    421: "misdirected",             # no vhost serves this Host on this address
    431: "header_too_large",        # limits.max_header_count / max_header_bytes
    501: "not_implemented",         # Transfer-Encoding other than chunked
    505: "version_not_supported",   # not HTTP/1.0 or 1.1
}
REJECT_REASON_SET = (*REJECT_REASONS.values(), "plain_http", "other")
QUIRKS = frozenset(("nokeepalive", "downgrade-1.0", "force-response-1.0",
                    "ssl-unclean-shutdown", "ssl-accurate-shutdown", "force-no-vary"))

# Buckets in seconds. A full handshake costs one signature (~0.1-2 ms for EC,
# ~1-5 ms RSA-2048) plus RTTs; resumptions are faster.
HANDSHAKE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Key = tuple[str, ...]


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class _Histogram:
    """Per-label-set bucket counts (non-cumulative; made cumulative at scrape)."""

    __slots__ = ("bounds", "data")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.data: dict[Key, list[float]] = {}  # key -> [b0..bn, +Inf, sum]

    def ensure(self, key: Key) -> list[float]:
        row = self.data.get(key)
        if row is None:
            row = self.data[key] = [0.0] * (len(self.bounds) + 2)
        return row

    def observe(self, key: Key, value: float) -> None:
        row = self.data.get(key) or self.ensure(key)
        row[bisect_left(self.bounds, value)] += 1  # le semantics: value <= bound
        row[-1] += value


@dataclass(frozen=True)
class CertificateFacts:
    vhost: str
    path: str
    subject_cn: str
    serial: str
    not_before: float
    not_after: float


def certificate_facts(vhost_label: str, cert_file: Path) -> CertificateFacts | None:
    """Read the leaf certificate of `cert_file` (PEM); None if it cannot be read."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    return CertificateFacts(
        vhost=vhost_label, path=str(cert_file), subject_cn=cn, serial=f"{cert.serial_number:x}",
        not_before=cert.not_valid_before_utc.timestamp(), not_after=cert.not_valid_after_utc.timestamp(),
    )


def build_versions() -> dict[str, str]:
    """Versions for tlsfront_build_info (what the mod_ssl FAQ asks a bug reporter)."""
    import OpenSSL
    import cryptography
    import twisted
    from cryptography.hazmat.backends.openssl.backend import backend

    from tlsfront import __version__

    return {
        "version": __version__,
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "pyopenssl": OpenSSL.__version__,
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
    }


# Counter and gauge names in the store, with help text and label names.
# (name without prefix, kind, help, labels). Kind "counter" | "gauge".
_SERIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("tls_handshakes", "counter", "TLS handshakes by vhost, protocol and result (ok: negotiated protocol; failed: highest protocol the ClientHello offered, 'unknown' without one).", ("vhost", "protocol", "result")),
    ("tls_handshake_failures", "counter", "Failed TLS handshakes by vhost, reason (fixed set) and the TLS alert received ('none' if none).", ("vhost", "reason", "alert")),
    ("tls_negotiated", "counter", "Successful handshakes by vhost, protocol and cipher: who still uses what.", ("vhost", "protocol", "cipher")),
    ("tls_resumptions", "counter", "Handshakes that resumed a session (session ID, ticket or TLS 1.3 PSK).", ("vhost",)),
    ("tls_session_cache_misses", "counter", "Handshakes where the client offered a session that was not resumed.", ("vhost",)),
    ("connections", "counter", "Client connections accepted.", ("vhost",)),
    ("connections_active", "gauge", "Client connections open now.", ("vhost",)),
    ("http_requests", "counter", "HTTP requests answered, by vhost and status class.", ("vhost", "code")),
    ("http_rejected_requests", "counter", "Requests the proxy answered itself without forwarding them (400, 408, 413, 431, ...; plain HTTP on a TLS port), by reason (fixed set).", ("vhost", "reason")),
    ("http_request_bytes", "counter", "Request bytes received from clients (headers and body).", ("vhost",)),
    ("http_response_bytes", "counter", "Response bytes sent to clients (headers and body).", ("vhost",)),
    ("quirks_applied", "counter", "Requests a quirk rule applied to, by quirk.", ("vhost", "quirk")),
    ("backend_requests", "counter", "Requests sent to a backend.", ("vhost", "backend")),
    ("backend_errors", "counter", "Backend failures by kind (refused, reset, timeout).", ("vhost", "backend", "kind")),
    ("backend_up", "gauge", "1 if the backend is considered up, 0 while it is marked down.", ("vhost", "backend")),
    ("backend_connections_in_use", "gauge", "Pooled backend connections carrying a request now.", ("vhost", "backend")),
    ("config_reloads", "counter", "Configuration reloads by result (success, failure).", ("result",)),
    ("config_last_reload_successful", "gauge", "1 if the last configuration (re)load succeeded.", ()),
    ("config_last_reload_success_timestamp_seconds", "gauge", "Time of the last successful configuration (re)load.", ()),
    ("worker_restarts", "counter", "Worker processes restarted by the master after they died.", ()),
)
_KIND = {name: kind for name, kind, _h, _l in _SERIES}

# How gauges merge across workers: connection counts add up; a backend is up
# only if every worker that has a view says so (min); reload facts are the
# master's own (max).
_GAUGE_MERGE: dict[str, Callable[[float, float], float]] = {
    "connections_active": lambda a, b: a + b,
    "backend_connections_in_use": lambda a, b: a + b,
    "backend_up": min,
    "config_last_reload_successful": max,
    "config_last_reload_success_timestamp_seconds": max,
}

_HISTOGRAMS: tuple[tuple[str, str, tuple[str, ...], tuple[float, ...]], ...] = (
    ("tls_handshake_duration_seconds", "Time from the first ClientHello byte to the end of a successful handshake.", ("vhost",), HANDSHAKE_BUCKETS),
    ("http_request_duration_seconds", "Time from the request line to the last response byte.", ("vhost",), REQUEST_BUCKETS),
)


class Metrics:
    """The per-process metric store; one instance per process (master or worker).

    All event methods take the vhost label (`VHost.label`) first and never
    raise on unexpected label values (they are folded into ``other``).
    """

    def __init__(self, vhosts: Iterable[Any] = (), clock: Callable[[], float] = time.time,
                 build: Mapping[str, str] | None = None) -> None:
        self._clock = clock
        self.series: dict[str, dict[Key, float]] = {name: defaultdict(float) for name in _KIND}
        self.histograms: dict[str, _Histogram] = {name: _Histogram(b) for name, _h, _l, b in _HISTOGRAMS}
        self._ciphers: set[str] = set()
        self.certificates: list[CertificateFacts] = []
        self.build = dict(build) if build is not None else build_versions()
        # Shortcuts for the hot path (attribute lookups, not dict lookups).
        s = self.series
        self._hs, self._fail, self._neg = s["tls_handshakes"], s["tls_handshake_failures"], s["tls_negotiated"]
        self._res, self._miss = s["tls_resumptions"], s["tls_session_cache_misses"]
        self._conn, self._active = s["connections"], s["connections_active"]
        self._req, self._bin, self._bout = s["http_requests"], s["http_request_bytes"], s["http_response_bytes"]
        self._quirks = s["quirks_applied"]
        self._rej = s["http_rejected_requests"]
        self._breq, self._berr, self._bup, self._bpool = (
            s["backend_requests"], s["backend_errors"], s["backend_up"], s["backend_connections_in_use"])
        self._hs_hist = self.histograms["tls_handshake_duration_seconds"]
        self._req_hist = self.histograms["http_request_duration_seconds"]
        # Process series exist from the first scrape (docs/metrics.md): a healthy proxy
        # shows 0 restarts and 0 failed reloads, not "No data".
        s["worker_restarts"][()] += 0
        s["config_reloads"][("success",)] += 0
        s["config_reloads"][("failure",)] += 0
        self.set_vhosts(vhosts)

    # -- configuration ----------------------------------------------------------------------

    def set_vhosts(self, vhosts: Iterable[Any]) -> None:
        """Pre-initialise every series of these vhosts to zero and read their certificates.

        Called at start and after each reload. Existing counts are kept.
        `vhosts` are `model.VHost` objects (anything with .label, .is_tls,
        .backends and .tls.certs works).
        """
        certs: list[CertificateFacts] = []
        for vh in vhosts:
            label = vh.label
            self._conn[(label,)] += 0
            self._active[(label,)] += 0
            for code in STATUS_CLASSES:
                self._req[(label, code)] += 0
            self._bin[(label,)] += 0
            self._bout[(label,)] += 0
            for reason in REJECT_REASON_SET:
                self._rej[(label, reason)] += 0
            self._req_hist.ensure((label,))
            for be in vh.backends:
                b = f"{be.host}:{be.port}"
                self._breq[(label, b)] += 0
                self._bpool[(label, b)] += 0
                if (label, b) not in self._bup:
                    self._bup[(label, b)] = 1.0
                for kind in BACKEND_ERROR_KINDS:
                    self._berr[(label, b, kind)] += 0
            if not vh.is_tls:
                continue
            for reason in REASONS:
                self._fail[(label, reason, "none")] += 0
            for alert in CERT_ALERTS:
                self._fail[(label, "client_rejected_cert", alert)] += 0
            for protocol in FAILED_PROTOCOLS:
                self._hs[(label, protocol, "failed")] += 0
            self._res[(label,)] += 0
            self._miss[(label,)] += 0
            self._hs_hist.ensure((label,))
            for ck in getattr(vh.tls, "certs", ()):
                facts = certificate_facts(label, ck.cert_file)
                if facts is not None:
                    certs.append(facts)
        self.certificates = certs

    # -- TLS events -------------------------------------------------------------------------

    def handshake_ok(self, vhost: str, protocol: str, cipher: str, resumed: bool, seconds: float) -> None:
        if protocol not in PROTOCOLS:
            protocol = "other"
        if cipher not in self._ciphers:
            if len(self._ciphers) >= MAX_CIPHER_LABELS:
                cipher = "other"
            else:
                self._ciphers.add(cipher)
        self._hs[(vhost, protocol, "ok")] += 1
        self._neg[(vhost, protocol, cipher)] += 1
        if resumed:
            self._res[(vhost,)] += 1
        self._hs_hist.observe((vhost,), seconds)

    def handshake_failed(self, vhost: str, failure: HandshakeFailure | str, alert: str | None = None,
                         protocol: str = "unknown") -> None:
        """Count one failed handshake; `failure` is a `tlserrors.HandshakeFailure` (or a reason).

        `protocol`: the highest version the client's ClientHello offered
        (`sniff.ClientHello.max_version_name`), "unknown" when there was none.
        """
        if isinstance(failure, HandshakeFailure):
            reason, alert = failure.reason, failure.alert
        else:
            reason = failure if failure in REASONS else "other"
        if alert is not None and alert not in KNOWN_ALERTS:
            alert = "other"
        if protocol not in PROTOCOLS:
            protocol = "unknown"
        self._hs[(vhost, protocol, "failed")] += 1
        self._fail[(vhost, reason, alert or "none")] += 1

    def cache_miss(self, vhost: str) -> None:
        """The client offered a session (`sniff.ClientHello.offers_resumption`) that was not resumed."""
        self._miss[(vhost,)] += 1

    # -- connections and requests -------------------------------------------------------------

    def connection_opened(self, vhost: str) -> None:
        self._conn[(vhost,)] += 1
        self._active[(vhost,)] += 1

    def connection_closed(self, vhost: str) -> None:
        self._active[(vhost,)] -= 1

    def request_done(self, vhost: str, status: int, seconds: float, bytes_in: int, bytes_out: int,
                     quirks: Iterable[str] = ()) -> None:
        self._req[(vhost, _status_class(status))] += 1
        self._bin[(vhost,)] += bytes_in
        self._bout[(vhost,)] += bytes_out
        self._req_hist.observe((vhost,), seconds)
        for q in quirks:
            self._quirks[(vhost, q if q in QUIRKS else "other")] += 1

    def request_rejected(self, vhost: str, status: int, reason: str | None = None) -> None:
        """A request the proxy answered itself with `status` instead of forwarding it.

        Counted here by reason (`REJECT_REASONS`, or `reason` when the caller knows
        better: "plain_http"); the answer itself is counted by `request_done` like any
        other, so tlsfront_http_requests_total has it under its status class.
        """
        if reason is None:
            reason = REJECT_REASONS.get(status, "other")
        elif reason not in REJECT_REASON_SET:
            reason = "other"
        self._rej[(vhost, reason)] += 1

    # -- backends ---------------------------------------------------------------------------

    def backend_request(self, vhost: str, backend: str) -> None:
        self._breq[(vhost, backend)] += 1

    def backend_error(self, vhost: str, backend: str, kind: str) -> None:
        """`kind`: refused, reset or timeout (anything else counts as ``other``)."""
        self._berr[(vhost, backend, kind if kind in BACKEND_ERROR_KINDS else "other")] += 1

    def backend_up(self, vhost: str, backend: str, up: bool) -> None:
        self._bup[(vhost, backend)] = 1.0 if up else 0.0

    def backend_connections(self, vhost: str, backend: str, in_use: int) -> None:
        self._bpool[(vhost, backend)] = float(in_use)

    # -- process ----------------------------------------------------------------------------

    def config_loaded(self, ok: bool) -> None:
        """A (re)load finished: `ok` says whether the new configuration is serving."""
        s = self.series
        s["config_reloads"][("success" if ok else "failure",)] += 1
        s["config_last_reload_successful"][()] = 1.0 if ok else 0.0
        if ok:
            s["config_last_reload_success_timestamp_seconds"][()] = self._clock()

    def worker_restarted(self) -> None:
        self.series["worker_restarts"][()] += 1

    # -- export -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A plain, JSON-able copy of the store (for summing workers)."""
        return {
            "series": {name: [[list(k), v] for k, v in d.items()] for name, d in self.series.items()},
            "histograms": {name: [[list(k), row] for k, row in h.data.items()]
                           for name, h in self.histograms.items()},
        }

    def collector(self, extra_snapshots: Callable[[], Iterable[Mapping[str, Any]]] | None = None) -> "MetricsCollector":
        """A prometheus_client collector over this store (plus other workers' snapshots)."""
        return MetricsCollector(self, extra_snapshots)


def merge_snapshots(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum several `Metrics.snapshot()` results (counters and histograms add;
    gauges merge per `_GAUGE_MERGE`)."""
    series: dict[str, dict[Key, float]] = {name: {} for name in _KIND}
    hists: dict[str, dict[Key, list[float]]] = {name: {} for name, _h, _l, _b in _HISTOGRAMS}
    for snap in snapshots:
        for name, rows in snap.get("series", {}).items():
            if name not in series:
                continue
            out = series[name]
            merge = _GAUGE_MERGE.get(name) if _KIND[name] == "gauge" else None
            for k, v in rows:
                key = tuple(k)
                if key in out:
                    out[key] = merge(out[key], v) if merge else out[key] + v
                else:
                    out[key] = v
        for name, rows in snap.get("histograms", {}).items():
            if name not in hists:
                continue
            out_h = hists[name]
            for k, row in rows:
                key = tuple(k)
                cur = out_h.get(key)
                if cur is None or len(cur) != len(row):
                    out_h[key] = list(row)
                else:
                    out_h[key] = [a + b for a, b in zip(cur, row)]
    return {"series": {n: [[list(k), v] for k, v in d.items()] for n, d in series.items()},
            "histograms": {n: [[list(k), r] for k, r in d.items()] for n, d in hists.items()}}


class MetricsCollector(Collector):
    """Builds fresh metric families from the store at each scrape."""

    def __init__(self, metrics: Metrics,
                 extra_snapshots: Callable[[], Iterable[Mapping[str, Any]]] | None = None) -> None:
        self.metrics = metrics
        self.extra_snapshots = extra_snapshots

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        if self.extra_snapshots is None:
            series = {name: list(d.items()) for name, d in m.series.items()}
            hists = {name: list(h.data.items()) for name, h in m.histograms.items()}
        else:
            merged = merge_snapshots([m.snapshot(), *self.extra_snapshots()])
            series = {n: [(tuple(k), v) for k, v in rows] for n, rows in merged["series"].items()}
            hists = {n: [(tuple(k), r) for k, r in rows] for n, rows in merged["histograms"].items()}
        for name, kind, help_text, labels in _SERIES:
            family_cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fam = family_cls(PREFIX + name, help_text, labels=labels)
            for key, value in sorted(series.get(name, ())):
                fam.add_metric(list(key), value)
            yield fam
        for (name, help_text, labels, bounds) in _HISTOGRAMS:
            fam = HistogramMetricFamily(PREFIX + name, help_text, labels=labels)
            for key, row in sorted(hists.get(name, ())):
                cumulative = 0.0
                buckets = []
                for bound, count in zip((*map(_fmt_bound, bounds), "+Inf"), row[:-1]):
                    cumulative += count
                    buckets.append((bound, cumulative))
                fam.add_metric(list(key), buckets, sum_value=row[-1])
            yield fam
        expiry = GaugeMetricFamily(
            PREFIX + "certificate_expiry_timestamp_seconds",
            "notAfter of each configured certificate, as a Unix time.",
            labels=("vhost", "subject_cn", "serial"))
        not_before = GaugeMetricFamily(
            PREFIX + "certificate_not_before_timestamp_seconds",
            "notBefore of each configured certificate, as a Unix time.",
            labels=("vhost", "subject_cn", "serial"))
        seen: set[tuple[str, str, str]] = set()
        for c in m.certificates:
            key = (c.vhost, c.subject_cn, c.serial)
            if key in seen:
                continue
            seen.add(key)
            expiry.add_metric(list(key), c.not_after)
            not_before.add_metric(list(key), c.not_before)
        yield expiry
        yield not_before
        info = InfoMetricFamily(PREFIX + "build", "tlsfront and library versions.")
        info.add_metric([], dict(m.build))
        yield info


def _fmt_bound(b: float) -> str:
    return repr(float(b))


def days_left(facts: CertificateFacts, now: float | None = None) -> float:
    """Days until `facts.not_after` (negative when expired): for the TLSF0103 warning."""
    now = time.time() if now is None else now
    return (facts.not_after - now) / 86400.0


def not_after_text(facts: CertificateFacts) -> str:
    return _dt.datetime.fromtimestamp(facts.not_after, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- several workers: snapshot files ---------------------------------------------------------------

class SnapshotWriter:
    """Worker side: write this process's snapshot to ``DIR/worker-<pid>.json`` atomically.

    Call `write()` on a timer (e.g. every second) and at exit; the master's
    `SnapshotCollector` sums the files.  Files of dead workers are kept so
    counters never go backwards after a restart (as prometheus_client's
    multiprocess mode keeps its .db files); `SnapshotCollector` drops their
    gauges.
    """

    def __init__(self, metrics: Metrics, directory: Path) -> None:
        self.metrics = metrics
        self.directory = Path(directory)

    @property
    def path(self) -> Path:
        return self.directory / f"worker-{os.getpid()}.json"

    def write(self) -> None:
        import json

        path = self.path
        tmp = path.with_suffix(".tmp")
        data = json.dumps(self.metrics.snapshot(), separators=(",", ":"))
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(data)
        os.replace(tmp, path)


class SnapshotCollector:
    """Master side: a callable for `Metrics.collector(extra_snapshots=...)` reading worker files.

    `live_pids()` returns the pids of running workers: gauges of other (dead)
    workers' files are dropped, their counters and histograms kept.
    """

    def __init__(self, directory: Path, live_pids: Callable[[], Iterable[int]] | None = None) -> None:
        self.directory = Path(directory)
        self.live_pids = live_pids

    def __call__(self) -> list[dict[str, Any]]:
        import json

        live = set(self.live_pids()) if self.live_pids is not None else None
        out: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                snap = json.loads(path.read_text(encoding="ascii"))
                pid = int(path.stem.split("-", 1)[1])
            except (OSError, ValueError):
                continue
            if live is not None and pid not in live:
                snap = dict(snap)
                snap["series"] = {n: rows for n, rows in snap.get("series", {}).items()
                                  if _KIND.get(n) == "counter"}
            out.append(snap)
        return out
