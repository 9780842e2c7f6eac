"""The store as Prometheus exposition text (format 0.0.4), prefix ``tlslog_``; every category pre-initialised.

One function, :func:`render_prometheus`, meant to be reused by every export route of issue 9 (``--textfile``,
``--push``, ``tlslog follow``'s /metrics): they differ only in where the text goes.

Metrics:

=====================================================  ==============================================================
``tlslog_events_total{category,source,vhost}``         events found; ``vhost`` is "" when the log line names none,
                                                       ``other`` beyond ``max_vhosts`` distinct values
``tlslog_lines_total{source}``                         lines read
``tlslog_unparsed_lines_total{source}``                lines the detected format did not understand
``tlslog_first_event_timestamp_seconds{category}``     time of the first / last event of a category (only if any)
``tlslog_last_event_timestamp_seconds{category}``
``tlslog_requests_total{status_class}``                requests in access logs / HAProxy httplog by status class
``tlslog_tls_requests_total{vhost,protocol}``          requests by TLS protocol (ssl_request_log)
``tlslog_tls_cipher_requests_total{vhost,cipher}``     requests by cipher suite (ssl_request_log)
``tlslog_files_total`` / ``tlslog_read_errors_total``  files read; files with a read problem (missing, corrupt, ...)
=====================================================  ==============================================================
"""

from __future__ import annotations

from collections import Counter

from .catalog import CATEGORIES
from .store import Store

DEFAULT_MAX_VHOSTS = 50


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(str(v))}"' for k, v in kv.items()) + "}"


def _num(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def bound_vhosts(counts: Counter, max_vhosts: int) -> dict[str, str]:
    """vhost -> the label value to use: the ``max_vhosts`` busiest keep their name (ties by name), others 'other'."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = {v for v, _ in ranked[:max_vhosts]}
    return {v: (v if v in keep or v == "" else "other") for v in counts}


def render_prometheus(store: Store, *, max_vhosts: int = DEFAULT_MAX_VHOSTS) -> str:
    out: list[str] = []

    def family(name: str, help_: str, type_: str = "counter") -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {type_}")

    # events, vhost-bounded, with every category present for every source seen
    vh_counts: Counter = Counter()
    for (_cat, _src, vh), n in store.events.items():
        vh_counts[vh] += n
    vmap = bound_vhosts(vh_counts, max_vhosts)
    events: Counter = Counter()
    for (cat, src, vh), n in store.events.items():
        events[(cat, src, vmap.get(vh, vh))] += n
    sources = store.sources() or ["none"]
    # access and ssl_request logs carry no error events: no zero series for them
    event_sources = [s for s in sources if s not in ("access", "ssl_request")] or sources
    for src in event_sources:
        for cat in CATEGORIES:
            events.setdefault((cat, src, ""), 0)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    family("tlslog_events_total", "TLS and proxy error events found in logs (one failed connection = one event).")
    for (cat, src, vh), n in sorted(events.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1], kv[0][2])):
        out.append(f"tlslog_events_total{_labels(category=cat, source=src, vhost=vh)} {n}")

    family("tlslog_lines_total", "Log lines read.")
    for src in sources:
        out.append(f"tlslog_lines_total{_labels(source=src)} {store.lines.get(src, 0)}")
    family("tlslog_unparsed_lines_total", "Log lines the detected format did not understand.")
    for src in sources:
        out.append(f"tlslog_unparsed_lines_total{_labels(source=src)} {store.unparsed.get(src, 0)}")

    family("tlslog_first_event_timestamp_seconds", "Time of the first event of a category.", "gauge")
    for cat in CATEGORIES:
        if cat in store.first:
            out.append(f"tlslog_first_event_timestamp_seconds{_labels(category=cat)} {_num(store.first[cat])}")
    family("tlslog_last_event_timestamp_seconds", "Time of the last event of a category.", "gauge")
    for cat in CATEGORIES:
        if cat in store.last:
            out.append(f"tlslog_last_event_timestamp_seconds{_labels(category=cat)} {_num(store.last[cat])}")

    family("tlslog_requests_total", "Requests in access logs by status class.")
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        out.append(f"tlslog_requests_total{_labels(status_class=cls)} {store.status.get(cls, 0)}")

    pv: Counter = Counter()
    for (vh, _p), n in store.protocols.items():
        pv[vh] += n
    pmap = bound_vhosts(pv, max_vhosts)
    protos: Counter = Counter()
    for (vh, p), n in store.protocols.items():
        protos[(pmap.get(vh, vh), p)] += n
    ciphers: Counter = Counter()
    for (vh, c), n in store.ciphers.items():
        ciphers[(pmap.get(vh, vh), c)] += n
    family("tlslog_tls_requests_total", "Requests by TLS protocol version (ssl_request_log).")
    for (vh, p), n in sorted(protos.items()):
        out.append(f"tlslog_tls_requests_total{_labels(vhost=vh, protocol=p)} {n}")
    family("tlslog_tls_cipher_requests_total", "Requests by cipher suite (ssl_request_log).")
    for (vh, c), n in sorted(ciphers.items()):
        out.append(f"tlslog_tls_cipher_requests_total{_labels(vhost=vh, cipher=c)} {n}")

    files = list(store.files.values())
    family("tlslog_files_total", "Input files scanned.")
    out.append(f"tlslog_files_total {sum(1 for f in files if f.readable)}")
    family("tlslog_read_errors_total", "Input files that could not be read completely (missing, corrupt, ...).")
    out.append(f"tlslog_read_errors_total {sum(1 for f in files if not f.readable or f.warnings)}")
    return "\n".join(out) + "\n"
