"""The scenarios of issue 4, as a table.

Each scenario is one wrk configuration against a front. `unit` is what one unit
of work is for "CPU per unit": a request, or a MiB of response body. `expect`
is what the server-side X-TLS-Resumed count must show (None: not checked).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.backend import BULK_PATH, SMALL_PATH


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    cert: str  # "ecdsa" | "rsa" (bench.certs.KINDS)
    path: str
    connections: int
    close: bool = False  # one request per connection (`Connection: close`)
    no_resumption: bool = False  # LD_PRELOAD shim: every handshake is full
    expect: str | None = None  # "full" | "resumed"
    unit: str = "requests"  # "requests" | "MiB"
    # the target: nginx CPU per unit / tlsfront CPU per unit, at least this
    target_vs_nginx: float | None = None

    @property
    def headers(self) -> tuple[str, ...]:
        return ("Connection: close",) if self.close else ()


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("keepalive", "keep-alive small requests (wrk -c50, 2-byte body)", "ecdsa", SMALL_PATH, 50,
             target_vs_nginx=0.25),
    Scenario("full-ecdsa", "full handshake + 1 request, ECDSA P-256, TLS 1.2", "ecdsa", SMALL_PATH, 20,
             close=True, no_resumption=True, expect="full", target_vs_nginx=0.5),
    Scenario("full-rsa", "full handshake + 1 request, RSA-2048, TLS 1.2", "rsa", SMALL_PATH, 20,
             close=True, no_resumption=True, expect="full", target_vs_nginx=0.8),
    Scenario("resumed", "resumed TLS 1.2 session + 1 request (ECDSA P-256)", "ecdsa", SMALL_PATH, 20,
             close=True, expect="resumed", target_vs_nginx=0.4),
    Scenario("bulk", "1 MiB responses over keep-alive (wrk -c8)", "ecdsa", BULK_PATH, 8,
             unit="MiB", target_vs_nginx=0.5),
)}

# with workers=2 the fronts are unpinned: the scenarios that say most about scaling
SCENARIOS_2_WORKERS = ("keepalive", "full-ecdsa", "bulk")
