"""nginx 1.22: provoke each category against a real nginx and count it.

One nginx (`nginx -p <dir> -c <conf> -e <error.log>`, as www-data, `daemon off`) with two
TLS servers on free 127.0.0.1 ports: `main` (TLS 1.2/1.3, ECDSA AES-GCM suites, proxying
to an answering, a dead and a silent backend) and `verify` (`ssl_verify_client on`).
error.log at `info` (nginx logs client-caused TLS failures at info, RFC 8446 alerts
included) and access.log in the predefined `combined` format.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .common import (
    drive_successes,
    fresh_case,
    CorpusPKI, Tally, backends, check_signatures, chown_tree, client_hello_prefix, connect_close,
    count_lines, free_port, idle_until_closed, plain_http, provoke_refusals, run_bg, stop,
    tls_request, wait_port, write_truth,
)

SIGNATURES = {
    "plain_http_on_tls_port": r"client sent plain HTTP request to HTTPS port",
    "client_rejected_cert": r"SSL_do_handshake\(\) failed .*alert unknown ca",
    "no_shared_cipher": r"SSL_do_handshake\(\) failed .*no shared cipher",
    "protocol_mismatch": r"SSL_do_handshake\(\) failed .*unsupported protocol",
    "client_cert_missing": r"client sent no required SSL certificate",
    "client_cert_invalid": r"client SSL certificate verify error",
    "handshake_eof_or_reset":
        r"(peer closed connection in SSL handshake|client closed connection while SSL handshaking)",
    "handshake_timeout": r"client timed out .* while SSL handshaking",
    "backend_unavailable": r"connect\(\) failed \(111: Connection refused\) while connecting to upstream",
    "backend_timeout": r"upstream timed out .* while reading response header from upstream",
}


def _conf(d: Path, pki: CorpusPKI, ports: dict[str, int], be: dict[str, int]) -> str:
    temp = "\n".join(f"  {k}_temp_path {d}/tmp/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/logs/access.log combined;
{temp}
  # the TLS handshake must finish within client_header_timeout (handshake_timeout)
  client_header_timeout 2s;
  ssl_certificate {pki.server_cert};
  ssl_certificate_key {pki.server_key};
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
  server {{
    listen 127.0.0.1:{ports['main']} ssl;
    server_name main.test;
    root {d}/htdocs;
    location /down/ {{ proxy_pass http://127.0.0.1:{be['dead']}/; }}
    location /slow/ {{ proxy_pass http://127.0.0.1:{be['silent']}/; proxy_read_timeout 1s; }}
    location /app/ {{ proxy_pass http://127.0.0.1:{be['ok']}/; }}
  }}
  server {{
    listen 127.0.0.1:{ports['verify']} ssl;
    server_name verify.test;
    root {d}/htdocs;
    ssl_verify_client on;
    ssl_verify_depth 1;
    ssl_client_certificate {pki.client_ca};
  }}
}}
"""


def _drive(pki: CorpusPKI, ports: dict[str, int], t: Tally) -> None:
    main, verify = ports["main"], ports["verify"]
    drive_successes(pki, main, verify, (("/", 200), ("/app/x", 200), ("/nope", 404), ("/app/missing", 404)), t)
    # plain HTTP: nginx answers 400 (internally 497) and logs it at info
    for _ in range(3):
        assert plain_http(main) == 400
        t.hit("plain_http_on_tls_port")
        t.status["4xx"] += 1
    provoke_refusals(main, t)
    # nginx finishes the handshake without a (valid) client certificate, then answers 400
    for _ in range(2):
        r = tls_request(verify, "/", ca=pki.ca)
        assert r.status == 400, r
        t.request(r)
        t.hit("client_cert_missing")
    for cert in ((pki.stranger_cert, pki.stranger_key), (pki.expired_cert, pki.expired_key)):
        r = tls_request(verify, "/", ca=pki.ca, cert=cert)
        assert r.status == 400, r
        t.request(r)
        t.hit("client_cert_invalid")
    for _ in range(2):
        r = tls_request(main, "/down/x", ca=pki.ca)
        assert r.status == 502, r
        t.request(r)
        t.hit("backend_unavailable")
    r = tls_request(main, "/slow/x", ca=pki.ca)
    assert r.status == 504, r
    t.request(r)
    t.hit("backend_timeout")
    hello = client_hello_prefix()
    connect_close(main, send=hello)
    t.hit("handshake_eof_or_reset")
    connect_close(main, send=hello, reset=True)
    t.hit("handshake_eof_or_reset")
    # connect and close without a byte: "client closed connection while SSL handshaking"
    connect_close(main)
    t.hit("handshake_eof_or_reset")
    idle_until_closed(main)
    t.hit("handshake_timeout")
    time.sleep(0.3)


# nginx's default error_log level is `error`: of the provoked failures only the upstream ones
# (connect() failed, upstream timed out: [error]) are logged; nginx logs client-caused TLS
# failures, plain HTTP and client certificate problems at [info]. Not logged, not an event.
VISIBLE_AT_ERROR = {"backend_unavailable", "backend_timeout"}


def _build_case(data: Path, work: Path, pki: CorpusPKI, case: str, level: str) -> None:
    d = work / case
    for sub in ("htdocs", "logs", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "htdocs" / "index.html").write_text("<p>corpus</p>\n")
    t = Tally()
    with backends() as be:
        ports = {"main": free_port(), "verify": free_port()}
        conf = d / "nginx.conf"
        conf.write_text(_conf(d, pki, ports, be).replace("/logs/error.log info;", f"/logs/error.log {level};"))
        chown_tree(work)
        proc = run_bg(["nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "logs" / "error.log")],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for p in ports.values():
                wait_port(p, proc=proc)
            _drive(pki, ports, t)
        finally:
            stop(proc)
    out = fresh_case(data, case)
    notes = None
    if level == "info":
        for name in ("error.log", "access.log"):
            (out / name).write_bytes((d / "logs" / name).read_bytes())
        requests = sum(t.status.values())
        if count_lines(out / "access.log") != requests:
            raise RuntimeError(f"{out}/access.log: {count_lines(out / 'access.log')} lines, {requests} requests")
        write_truth(out / "access.log", status=t.status)
    else:
        (out / "error.log").write_bytes((d / "logs" / "error.log").read_bytes())
        hidden = {c: n for c, n in t.events.items() if c not in VISIBLE_AT_ERROR}
        check_signatures(out / "error.log", {c: (SIGNATURES[c], 0) for c in hidden}
                         | {"any SSL failure": (r"SSL_do_handshake|SSL handshaking|SSL certificate", 0)})
        for c in hidden:
            del t.events[c]
        notes = {f"provoked_but_not_logged_at_{level}": dict(sorted(hidden.items()))}
    check_signatures(out / "error.log", {k: (SIGNATURES[k], n) for k, n in t.events.items()})
    write_truth(out / "error.log", events=t.events, extra=notes)
    print(f"{case}: {dict(t.events)} status {dict(t.status)}")


def build(data: Path, work: Path, pki: CorpusPKI) -> None:
    _build_case(data, work, pki, "nginx122", "info")
    _build_case(data, work, pki, "nginx122-level-error", "error")
