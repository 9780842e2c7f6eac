"""A synthetic Apache 2.4 error log for the analyzer benchmark (issue 3's Speed section).

N lines, 10% of them TLS/proxy error lines (mod_ssl handshake failures with their
`SSL Library Error:` follow-ups, certificate verification, proxy connect errors),
the rest ordinary error-log traffic. Deterministic for a given seed, so runs on
different days scan the same bytes. Used when `tlslog.synth` is not available.

Usage: python -m bench.synthlog OUT.log [--lines 2000000] [--seed 4]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

# 2-line events: AH02008 then the OpenSSL reason (OpenSSL 3 wording), as mod_ssl logs them
TLS_LINES = (
    "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02008: SSL library error 1 in handshake (server www.example.test:443)",
    "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A000102:SSL routines::unsupported protocol",
    "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A00010B:SSL routines::wrong version number",
    "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A000418:SSL routines::tlsv1 alert unknown ca (SSL alert number 48)",
    "[ssl:info] [pid {pid}:tid {tid}] SSL Library Error: error:0A0000C1:SSL routines::no shared cipher",
    "[ssl:error] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02039: Certificate Verification: Error (20): unable to get local issuer certificate",
    "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02261: Re-negotiation handshake failed",
    "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01991: SSL input filter read failed.",
    "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH02007: SSL handshake interrupted by system [Hint: Stop button pressed in browser?!]",
    "[proxy:error] [pid {pid}:tid {tid}] (111)Connection refused: AH00957: HTTP: attempt to connect to 127.0.0.1:8080 (127.0.0.1) failed",
)
OTHER_LINES = (
    "[core:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH00128: File does not exist: /var/www/html/favicon.ico",
    "[authz_core:error] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01630: client denied by server configuration: /var/www/html/private",
    "[ssl:info] [pid {pid}:tid {tid}] [client {ip}:{port}] AH01964: Connection to child {child} established (server www.example.test:443)",
    "[mpm_event:notice] [pid {pid}:tid {tid}] AH00489: Apache/2.4.62 (Debian) OpenSSL/3.0.15 configured -- resuming normal operations",
    "[php:warn] [pid {pid}:tid {tid}] [client {ip}:{port}] PHP Warning:  Undefined variable $user in /var/www/html/index.php on line {child}",
    "[core:error] [pid {pid}:tid {tid}] [client {ip}:{port}] AH00037: Symbolic link not allowed or link target not accessible: /var/www/html/link",
    "[rewrite:trace1] [pid {pid}:tid {tid}] mod_rewrite.c(483): [client {ip}:{port}] 10.0.0.1 - - [www.example.test/sid#7f][rid#7f/initial] pass through /index.html",
)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# what `grep` is asked to find in the benchmark: one literal, and six error patterns
GREP_LITERAL = "AH02008"
GREP_SIX = "AH02008|SSL Library Error|AH02039|AH02261|AH01991|AH00957"


def generate(path: Path, lines: int = 2_000_000, seed: int = 4, tls_share: float = 0.10) -> Path:
    """Write `lines` lines to `path`; about `tls_share` of them are TLS/proxy error lines."""
    rnd = random.Random(seed)
    # a TLS event is 1.5 lines on average (see below): solve 1.5p / (1 + 0.5p) = tls_share for p
    event_p = tls_share / (1.5 - 0.5 * tls_share)
    out = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        n = 0
        second = 0
        while n < lines:
            second += rnd.random() < 0.3
            stamp = f"[{DAYS[(second // 86400) % 7]} Nov {1 + (second // 86400) % 28:02d} " \
                    f"{(second // 3600) % 24:02d}:{(second // 60) % 60:02d}:{second % 60:02d}.{rnd.randrange(10**6):06d} 2026] "
            fields = dict(pid=rnd.randrange(1000, 40000), tid=rnd.randrange(10**14, 10**15),
                          ip=f"192.0.2.{rnd.randrange(1, 255)}", port=rnd.randrange(1024, 65535),
                          child=rnd.randrange(1, 300))
            if rnd.random() < event_p:
                # 60% of events are handshake failures (AH02008 + an "SSL Library Error:" line)
                i = rnd.randrange(6) if rnd.random() < 0.6 else rnd.randrange(5, len(TLS_LINES))
                if i < 5:
                    out.append(stamp + TLS_LINES[0].format(**fields))
                    out.append(stamp + TLS_LINES[rnd.randrange(1, 5)].format(**fields))
                    n += 2
                else:
                    out.append(stamp + TLS_LINES[i].format(**fields))
                    n += 1
            else:
                out.append(stamp + OTHER_LINES[rnd.randrange(len(OTHER_LINES))].format(**fields))
                n += 1
            if len(out) >= 50_000:
                f.write("\n".join(out) + "\n")
                out.clear()
        if out:
            f.write("\n".join(out) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.synthlog", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--lines", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=4)
    args = p.parse_args(argv)
    generate(args.out, args.lines, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
