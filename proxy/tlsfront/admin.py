"""The admin listener: ``/metrics``, ``/healthz`` and ``/readyz`` on `[admin] listen`.

A small twisted.web `Site` (this is not the hot path). The reactor is a
parameter of `listen_admin`; importing this module imports no reactor.

- ``GET /metrics``: the registry in Prometheus text format 0.0.4, or
  OpenMetrics 1.0 when the ``Accept`` header asks for
  ``application/openmetrics-text`` (prometheus_client's ``choose_encoder``).
  Rendered synchronously: collecting the in-memory store takes well under a
  millisecond (see docs/metrics.md), so no thread pool is needed (unlike
  ``prometheus_client.twisted.MetricsResource``, which also installs a reactor
  on import).
- ``GET /healthz``: ``200 {"status": "ok", "pid": N}``: the process answers.
- ``GET /readyz``: ``200`` when every listener is bound, else ``503``; the body
  is JSON from the `readiness` callable::

      {"ready": true,
       "listeners": [{"address": "127.0.0.1:8443", "vhost": "www.example.test:8443", "bound": true}],
       "backends": [{"vhost": "www.example.test:8443", "backend": "127.0.0.1:8081", "up": false}]}

  Backends being down do not make the process unready (it still answers
  502/503 correctly and another instance would not do better); they are listed
  for the operator.

The admin listener must never be a public vhost's address: `check_address`
says so in the configuration check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from twisted.web import resource, server


@dataclass(frozen=True)
class ListenerState:
    address: str
    vhost: str
    bound: bool


@dataclass(frozen=True)
class BackendState:
    vhost: str
    backend: str
    up: bool


@dataclass(frozen=True)
class Readiness:
    listeners: tuple[ListenerState, ...] = ()
    backends: tuple[BackendState, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return bool(self.listeners) and all(l.bound for l in self.listeners)

    def as_json(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "listeners": [asdict(l) for l in self.listeners],
            "backends": [asdict(b) for b in self.backends],
            **self.extra,
        }


def _json(request: server.Request, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


class _Leaf(resource.Resource):
    isLeaf = True

    def render_HEAD(self, request: server.Request) -> bytes:  # twisted drops the body itself
        return self.render_GET(request)  # type: ignore[attr-defined, no-any-return]


class MetricsResource(_Leaf):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: server.Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        body: bytes = encoder(self.registry)
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return body


class HealthResource(_Leaf):
    def render_GET(self, request: server.Request) -> bytes:
        return _json(request, 200, {"status": "ok", "pid": os.getpid()})


class ReadyResource(_Leaf):
    def __init__(self, readiness: Callable[[], Readiness]) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request: server.Request) -> bytes:
        state = self.readiness()
        return _json(request, 200 if state.ready else 503, state.as_json())


class _Root(resource.Resource):
    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return resource.NoResource(
            "Not found. This is the tlsfront admin listener: /metrics, /healthz, /readyz.")

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"tlsfront admin: /metrics /healthz /readyz\n"


class _QuietSite(server.Site):
    """No access log for scrapes and probes (they would drown the real traffic)."""

    def log(self, request: server.Request) -> None:
        pass


def make_site(registry: CollectorRegistry, readiness: Callable[[], Readiness]) -> server.Site:
    root = _Root()
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"healthz", HealthResource())
    root.putChild(b"readyz", ReadyResource(readiness))
    site = _QuietSite(root)
    site.displayTracebacks = False
    return site


def listen_admin(reactor: Any, host: str, port: int, site: server.Site) -> Any:
    """Listen on host:port with `reactor`; returns the IListeningPort (raises CannotListenError)."""
    return reactor.listenTCP(port, site, interface=host)


def check_address(admin_host: str, admin_port: int, vhost_addresses: Iterable[tuple[str, int, str]]) -> str | None:
    """The problem if the admin address collides with a vhost's listen address, else None.

    `vhost_addresses`: (host, port, where) per vhost; host may be "*".
    """
    for host, port, where in vhost_addresses:
        if port == admin_port and (host == admin_host or "*" in (host, admin_host)):
            return (f"[admin] listen {admin_host}:{admin_port} is also {where}'s listen address "
                    f"{host}:{port}: the admin endpoints (/metrics, /readyz) must never be served on "
                    f"a public vhost. Fix: give [admin] its own port, on 127.0.0.1.")
    return None
