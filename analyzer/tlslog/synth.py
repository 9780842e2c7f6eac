"""A synthetic Apache 2.4 error log for benchmarks (issue 3's speed targets) and scale tests, with its truth.

``python -m tlslog.synth OUT --lines 2000000 [--tls-fraction 0.1] [--seed 1]`` writes a log of the given number of
lines in Apache 2.4's default format (mpm_event: ``[pid N:tid N]``), about 190 bytes a line like the figures in
shared/reference/benchmarking-notes.md, where ``--tls-fraction`` of the lines are TLS/proxy error lines
(``AH02008`` + ``SSL Library Error:`` pairs, ``AH01996`` plain HTTP, ``AH02007`` resets, ``AH00957``/``AH01114``
backend failures) and the rest ordinary traffic (connection established/closed, file not found, access denied, debug
lines). It prints the expected event counts as JSON, which is exactly what ``tlslog scan --format json`` must report.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter

_DAYS = "Mon Tue Wed Thu Fri Sat Sun".split()
_MONS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

NORMAL = (
    "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01964: Connection to child {child} established "
    "(server {vhost})",
    "[core:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH00128: File does not exist: /var/www/html/"
    "static/img/favicon-{port}.ico",
    "[authz_core:error] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01630: client denied by server "
    "configuration: /var/www/html/private/report-{child}.pdf",
    "[ssl:debug] [pid {pid}:tid {tid}] ssl_engine_kernel.c(2372): [client {ip}:{port}] AH02043: SSL virtual host "
    "for servername {vhost} found",
    "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01998: Connection closed to child {child} with "
    "standard shutdown (server {vhost})",
)

# (category, lines) for one failed connection; OpenSSL 3 and 1.1 wordings mixed
ERRORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("client_rejected_cert", (
        "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02008: SSL library error 1 in handshake "
        "(server {vhost})",
        "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A000412:SSL routines::sslv3 alert bad "
        "certificate (SSL alert number 42)")),
    ("client_rejected_cert", (
        "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02008: SSL library error 1 in handshake "
        "(server {vhost})",
        "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:14094418:SSL routines:ssl3_read_bytes:tlsv1 "
        "alert unknown ca (SSL alert number 48)")),
    ("no_shared_cipher", (
        "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02008: SSL library error 1 in handshake "
        "(server {vhost})",
        "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A0000C1:SSL routines::no shared cipher")),
    ("protocol_mismatch", (
        "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02008: SSL library error 1 in handshake "
        "(server {vhost})",
        "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A000102:SSL routines::unsupported protocol")),
    ("plain_http_on_tls_port", (
        "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01996: SSL handshake failed: HTTP spoken on HTTPS "
        "port; trying to send HTML error page",
        "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A00009C:SSL routines::http request")),
    ("client_cert_missing", (
        "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02008: SSL library error 1 in handshake "
        "(server {vhost})",
        "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A0000C7:SSL routines::peer did not return a "
        "certificate")),
    ("handshake_eof_or_reset", (
        "[ssl:info] [pid {pid}:tid {tid}] (104)Connection reset by peer: [client {ip}:{port}] AH02007: SSL "
        "handshake interrupted by system [Hint: Stop button pressed in browser?!]",)),
    ("backend_unavailable", (
        "[proxy:error] [pid {pid}:tid {tid}] (111)Connection refused: AH00957: HTTP: attempt to connect to "
        "127.0.0.1:8080 (127.0.0.1:8080) failed",
        "[proxy_http:error] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01114: HTTP: failed to make connection "
        "to backend: 127.0.0.1")),
)


def generate(lines: int, tls_fraction: float = 0.1, seed: int = 1, start: float = 1795000000.0):
    """Yield ``(text line without newline, category or None)``; error groups are never cut by the line budget."""
    rnd = random.Random(seed)
    t = start
    produced = 0
    tids = [140000000000 + i * 4096 for i in range(64)]
    vhosts = ("www.example.com:443", "shop.example.com:443", "api.example.com:443")
    mean = sum(len(g) for _, g in ERRORS) / len(ERRORS)  # lines per error group
    p_group = tls_fraction / (mean * (1 - tls_fraction) + tls_fraction)
    while produced < lines:
        t += rnd.random() * 0.02
        whole = int(t)
        usec = int((t - whole) * 1e6)
        tm = time.gmtime(whole)
        stamp = (f"[{_DAYS[tm.tm_wday]} {_MONS[tm.tm_mon - 1]} {tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:"
                 f"{tm.tm_sec:02d}.{usec:06d} {tm.tm_year}] ")
        fields = dict(pid=2000 + rnd.randrange(8), tid=rnd.choice(tids), ip=f"198.51.100.{rnd.randrange(1, 255)}",
                      port=rnd.randrange(1024, 65536), child=rnd.randrange(1, 400), vhost=rnd.choice(vhosts))
        # a group of k lines replaces k normal lines so that the error-line fraction holds
        if rnd.random() < p_group and produced + 2 <= lines:
            category, group = rnd.choice(ERRORS)
            for j, tmpl in enumerate(group):
                yield stamp + tmpl.format(**fields), category if j == 0 else None
                produced += 1
        else:
            yield stamp + rnd.choice(NORMAL).format(**fields), None
            produced += 1


def write(path: str, lines: int, tls_fraction: float = 0.1, seed: int = 1) -> Counter:
    """Write the log to ``path``; return the expected events per category."""
    truth: Counter = Counter()
    buf: list[str] = []
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for text, category in generate(lines, tls_fraction, seed):
            buf.append(text)
            if category:
                truth[category] += 1
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            f.write("\n".join(buf) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tlslog.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--lines", type=int, default=2_000_000)
    p.add_argument("--tls-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    truth = write(a.out, a.lines, a.tls_fraction, a.seed)
    json.dump({"lines": a.lines, "events": dict(sorted(truth.items()))}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
