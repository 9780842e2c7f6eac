"""The store to Prometheus by every route: live ``/metrics``, node_exporter's textfile, the Pushgateway.

All routes start from the core's :func:`tlslog.prometheus.render_prometheus` (so names, labels, vhost bounding and
the pre-initialised zeros are the same everywhere) and go through one prometheus_client *custom collector*
(client_python's docs, "Custom Collectors"): each scrape renders the store afresh under its lock, so a scrape never
sees half of a batch of lines. Follow mode adds its own families:

==========================================  ======  ============================================================
``tlslog_files_followed``                   gauge   files open right now (live and being drained after rotation)
``tlslog_rotations_total{kind}``            counter rotations seen: ``rename`` (rename-and-create, delete and
                                                    create) and ``copytruncate`` (truncated in place)
``tlslog_read_errors_total``                counter distinct problems opening, stating or reading files
==========================================  ======  ============================================================

and drops the scan's ``tlslog_files_total`` / ``tlslog_read_errors_total`` (about files of a batch scan).

Example::

    registry = registry_for(lambda: store, max_vhosts=50)
    write_textfile("/var/lib/node_exporter/textfile/tlslog.prom", registry)
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable, Iterator
from urllib.error import URLError

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from .positions import write_atomic
from .prometheus import DEFAULT_MAX_VHOSTS, render_prometheus
from .store import Store

ROTATION_KINDS = ("rename", "copytruncate")
#: families of a batch scan that mean nothing in follow mode (replaced by follow's own)
_SCAN_ONLY = frozenset({"tlslog_files", "tlslog_read_errors"})


class ExportError(Exception):
    """An export that failed; the message names the target, what happened and the fix."""


class StoreCollector:
    """A prometheus_client collector over a store (``describe`` returns nothing: the families vary by source)."""

    def __init__(
        self,
        get_store: Callable[[], Store],
        *,
        max_vhosts: int = DEFAULT_MAX_VHOSTS,
        lock: threading.Lock | None = None,
        extra: Callable[[], Iterable[Metric]] | None = None,
    ) -> None:
        self.get_store = get_store
        self.max_vhosts = max_vhosts
        self.lock: ContextManager = lock if lock is not None else nullcontext()
        self.extra = extra

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            text = render_prometheus(self.get_store(), max_vhosts=self.max_vhosts)
            extra = list(self.extra()) if self.extra is not None else []
        for family in text_string_to_metric_families(text):
            if extra and family.name in _SCAN_ONLY:
                continue
            yield family
        yield from extra


def follow_families(files_followed: int, rotations: dict[str, int], read_errors: int) -> list[Metric]:
    """The follow-only families (see the module documentation)."""
    g = GaugeMetricFamily("tlslog_files_followed", "Log files open (followed, or drained after a rotation).")
    g.add_metric([], files_followed)
    r = CounterMetricFamily("tlslog_rotations", "Log rotations seen, by kind.", labels=["kind"])
    for kind in ROTATION_KINDS:
        r.add_metric([kind], rotations.get(kind, 0))
    e = CounterMetricFamily("tlslog_read_errors", "Problems opening, stating or reading log files.")
    e.add_metric([], read_errors)
    return [g, r, e]


def registry_for(
    get_store: Callable[[], Store],
    *,
    max_vhosts: int = DEFAULT_MAX_VHOSTS,
    lock: threading.Lock | None = None,
    extra: Callable[[], Iterable[Metric]] | None = None,
) -> CollectorRegistry:
    """A fresh registry holding only our collector (no process or platform collectors: a textfile or a push
    should carry only the log's numbers)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(get_store, max_vhosts=max_vhosts, lock=lock, extra=extra))
    return reg


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def write_textfile(path: str, registry: CollectorRegistry) -> None:
    """The exposition, written atomically (node_exporter must never read half a file: it would drop all of it)."""
    try:
        write_atomic(path, exposition(registry))
    except OSError as exc:
        raise ExportError(f"--textfile {path}: cannot write: {exc.strerror or exc}; the directory must exist and "
                          "be writable (node_exporter's --collector.textfile.directory)") from None


def push(url: str, job: str, registry: CollectorRegistry, *, timeout: float = 30.0) -> None:
    """PUT the exposition to a Pushgateway under ``job`` (replacing what that job pushed before)."""
    try:
        push_to_gateway(url, job=job, registry=registry, timeout=timeout)
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ExportError(f"--push {url}: cannot push job {job!r}: {reason}; check that a Pushgateway listens "
                          "there (default port 9091)") from None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all addresses) -> (host, port); ValueError names the value."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9469 or [::1]:9469")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve(listen: str, registry: CollectorRegistry):
    """Serve ``/metrics`` on ``listen`` in a daemon thread; returns (server, thread). Raises ExportError."""
    host, port = parse_listen(listen)
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ExportError(f"--listen {listen}: cannot listen: {exc.strerror or exc}; choose a free port or "
                          "address") from None
