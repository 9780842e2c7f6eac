"""The master's admin listener: a small non-blocking HTTP/1.x responder on `[admin] listen`
serving ``/metrics`` (the master's store plus every worker's snapshot file, summed),
``/healthz`` and ``/readyz``; and the folding of dead workers' snapshots into the sums.

The master runs no reactor (master.py says why), so this is not admin.py's twisted.web
Site: requests are read from the master's `selectors` loop, one response is written and
the connection closed. A request head is at most ADMIN_MAX_REQUEST_BYTES and must arrive
within ADMIN_REQUEST_TIMEOUT_SECONDS. Example::

    GET /metrics HTTP/1.1          -> 200, text format 0.0.4 (OpenMetrics if Accept asks)
    HEAD /healthz HTTP/1.0         -> 200, headers only
    POST /metrics HTTP/1.1         -> 405 with "Allow: GET, HEAD"

Mixed into `master.Master`, which owns the state (`sel`, `admin_conns`, `registry`, ...).
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from typing import Any

from .model import Address

ADMIN_REQUEST_TIMEOUT_SECONDS = 5.0
ADMIN_MAX_REQUEST_BYTES = 16 * 1024


class AdminMixin:
    """Metrics registry and the admin connections; see the module docstring."""

    def _build_registry(self) -> None:
        from prometheus_client.registry import CollectorRegistry

        from .metrics import SnapshotCollector

        self.registry = CollectorRegistry()
        files = SnapshotCollector(self.snapshot_dir, self._live_worker_pids)
        self.snapshots = lambda: [self.retired, *files()]
        self.registry.register(self.metrics.collector(extra_snapshots=self.snapshots))

    def _retire_snapshot(self, pid: int) -> None:
        """Fold a dead worker's last snapshot into `self.retired` (its counters and
        histograms only: its gauges died with it) and delete the file, so counters never
        go backwards and the directory does not grow with every restart and reload."""
        from .metrics import _KIND, merge_snapshots

        assert self.snapshot_dir is not None
        path = self.snapshot_dir / f"worker-{pid}.json"
        try:
            snap = json.loads(path.read_text(encoding="ascii"))
        except (OSError, ValueError):
            return
        snap["series"] = {n: rows for n, rows in snap.get("series", {}).items() if _KIND.get(n) == "counter"}
        self.retired = merge_snapshots([self.retired, snap])
        try:
            path.unlink()
        except OSError:
            pass


    def _admin_accept(self, sock: socket.socket) -> None:
        try:
            conn, _addr = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        conn.setblocking(False)
        self.admin_conns[conn] = (bytearray(), time.monotonic() + ADMIN_REQUEST_TIMEOUT_SECONDS)
        self.sel.register(conn, selectors.EVENT_READ, self._admin_read)

    def _admin_close(self, conn: socket.socket) -> None:
        self.admin_conns.pop(conn, None)
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _admin_read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._admin_close(conn)
            return
        buf, _deadline = self.admin_conns[conn]
        buf += data
        if b"\r\n\r\n" not in buf and b"\n\n" not in buf and len(buf) < ADMIN_MAX_REQUEST_BYTES:
            return
        response = self._admin_response(bytes(buf))
        self.sel.unregister(conn)
        self.admin_conns.pop(conn, None)
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)  # loopback scrapers read at once; never let one stall the master
            conn.sendall(response)
        except OSError:
            pass
        finally:
            conn.close()

    def _admin_response(self, request: bytes) -> bytes:
        head = request.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _http(400, "text/plain; charset=utf-8", b"bad request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if method not in (b"GET", b"HEAD"):
            return _http(405, "text/plain; charset=utf-8", b"only GET and HEAD\n", head_only=False,
                         extra=b"Allow: GET, HEAD\r\n")
        head_only = method == b"HEAD"
        if target == b"/metrics":
            from prometheus_client.exposition import choose_encoder
            encoder, content_type = choose_encoder(headers.get(b"accept", b"").decode("latin-1"))
            return _http(200, content_type, encoder(self.registry), head_only)
        if target == b"/healthz":
            body = {"status": "ok", "pid": os.getpid(), "workers": len(self._live_worker_pids())}
            return _http(200, "application/json", json.dumps(body, sort_keys=True).encode() + b"\n", head_only)
        if target == b"/readyz":
            state = self._readiness()
            return _http(200 if state.ready else 503, "application/json",
                         json.dumps(state.as_json(), sort_keys=True).encode() + b"\n", head_only)
        if target == b"/":
            return _http(200, "text/plain; charset=utf-8", b"tlsfront admin: /metrics /healthz /readyz\n", head_only)
        return _http(404, "text/plain; charset=utf-8",
                     b"Not found. This is the tlsfront admin listener: /metrics, /healthz, /readyz.\n", head_only)

    def _readiness(self) -> Any:
        from .admin import BackendState, ListenerState, Readiness
        from .affinity import vhosts_on
        from .metrics import merge_snapshots

        gen = self.gen
        assert gen is not None
        ready_workers = sum(1 for pid in gen.slots if pid in self.children and self.children[pid].ready)
        listeners = []
        for address, listener in gen.listeners.items():
            for v in vhosts_on(gen.config, address):
                listeners.append(ListenerState(str(v.listen), v.label,
                                               bool(listener.socks) and ready_workers > 0 and not self.stopping))
        merged = merge_snapshots([self.metrics.snapshot(), *self.snapshots()])
        backends = tuple(BackendState(k[0], k[1], v >= 1.0)
                         for k, v in merged["series"].get("backend_up", []))
        return Readiness(tuple(listeners), backends,
                         {"workers": {"configured": gen.workers, "ready": ready_workers,
                                      "pids": list(gen.slots)},
                          "generation": gen.number})


    def _admin_expire(self, now: float) -> None:
        """Close admin connections whose request did not arrive in time."""
        for conn, (_buf, deadline) in list(self.admin_conns.items()):
            if now >= deadline:
                self._admin_close(conn)


def _http(status: int, content_type: str, body: bytes, head_only: bool = False, extra: bytes = b"") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n").encode()
    return head + extra + b"\r\n" + (b"" if head_only else body)


def _bind_admin(address: Address) -> socket.socket:
    """The admin listener's non-blocking socket (a small backlog: scrapers, not clients)."""
    from .serve import bind

    return bind(address, backlog=64)
