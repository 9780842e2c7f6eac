"""HAProxy 2.6: provoke each category against a real HAProxy and count it.

Two runs of `haproxy -db -f <conf>` (as www-data), each with a TLS frontend on free
127.0.0.1 ports (`main`: TLS 1.2+, ECDSA AES-GCM suites; `verify`: `verify required`):

- `syslog`: `log 127.0.0.1:<udp> format rfc3164` to a UDP socket this script reads and
  writes as rsyslog's traditional file format would (the PRI stripped); `option httplog`,
  and HAProxy's fixed connection-error lines ("SSL handshake failure", ...). Backends:
  answering, refusing (503 SC), health-checked down (503 <NOSRV>), silent (504 sH).
- `errorlogformat`: `log stdout format raw`, `option httpslog` and the `error-log-format`
  example of HAProxy 2.6's configuration manual (section 8.2.5) with `ssl_fc_err_str`
  appended, so each TLS failure carries OpenSSL's reason code and text.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

from .common import (
    drive_successes,
    fresh_case,
    CorpusPKI, Tally, backends, check_signatures, chown_tree, client_hello_prefix, connect_close,
    curl_untrusting, free_port, idle_until_closed, plain_http, run_bg, s_client, stop, tls_request,
    wait_port, write_truth,
)

ECDSA_SUITES = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"

# HAProxy 2.6 configuration manual, 8.2.5, verbatim, plus the error string (ssl_fc_err_str)
ERROR_LOG_FORMAT = (
    "%ci:%cp [%tr] %ft %ac/%fc %[fc_err]/%[ssl_fc_err,hex]/%[ssl_c_err]/%[ssl_c_ca_err]/"
    "%[ssl_fc_is_resumed] %[ssl_fc_sni]/%sslv/%sslc %{+Q}[ssl_fc_err_str]"
)


def _conf(d: Path, pki: CorpusPKI, ports: dict[str, int], be: dict[str, int], log_line: str,
          errorlogformat: bool) -> str:
    fmt = "option httpslog\n  error-log-format \"" + ERROR_LOG_FORMAT + "\"" if errorlogformat else "option httplog"
    return f"""global
  {log_line}
  maxconn 200
  nbthread 1
  # OpenSSL 3 refuses TLS 1.0/1.1 at the default security level anyway; say what we mean
  ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
  mode http
  log global
  {fmt}
  timeout connect 1s
  # the TLS handshake must finish within timeout client (handshake_timeout)
  timeout client 2s
  timeout server 1s
  retries 0

frontend main
  bind 127.0.0.1:{ports['main']} ssl crt {pki.combined_pem} ciphers {ECDSA_SUITES}
  bind 127.0.0.1:{ports['verify']} ssl crt {pki.combined_pem} verify required ca-file {pki.client_ca}
  use_backend refused if {{ path_beg /down/ }}
  use_backend nosrv if {{ path_beg /nosrv/ }}
  use_backend slow if {{ path_beg /slow/ }}
  default_backend app

backend app
  server app1 127.0.0.1:{be['ok']}

backend refused
  server dead1 127.0.0.1:{be['dead']}

backend nosrv
  server dead2 127.0.0.1:{be['dead']} check inter 200ms fall 1 rise 1

backend slow
  server silent1 127.0.0.1:{be['silent']}
"""


def _drive_tls(pki: CorpusPKI, ports: dict[str, int], t: Tally, triggered: dict[str, int]) -> None:
    main, verify = ports["main"], ports["verify"]

    def did(what: str) -> None:
        triggered[what] = triggered.get(what, 0) + 1

    drive_successes(pki, main, verify, (("/app", 200), ("/missing", 404)), t)
    for _ in range(2):
        assert plain_http(main) == 0  # HAProxy answers no HTTP error page, it just closes
        did("plain_http_on_tls_port")
    for _ in range(2):
        assert curl_untrusting(main) == 60
        did("client_rejected_cert")
    assert s_client(main, "-tls1_2", "-cipher", "AES128-SHA256:AES256-SHA") != 0
    did("no_shared_cipher")
    assert s_client(main, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0") != 0
    did("protocol_mismatch")
    r = tls_request(verify, "/", ca=pki.ca)
    assert r.status == 0, r
    did("client_cert_missing")
    for cert in ((pki.stranger_cert, pki.stranger_key), (pki.expired_cert, pki.expired_key)):
        r = tls_request(verify, "/", ca=pki.ca, cert=cert)
        assert r.status == 0, r
        did("client_cert_invalid")
    hello = client_hello_prefix()
    connect_close(main, send=hello)
    did("handshake_eof")
    connect_close(main, send=hello, reset=True)
    did("handshake_reset")
    connect_close(main)
    did("handshake_eof")
    idle_until_closed(main)
    did("handshake_timeout")


def _drive_backends(pki: CorpusPKI, ports: dict[str, int], t: Tally) -> None:
    main = ports["main"]
    for path, want, category in (("/down/x", 503, "backend_unavailable"), ("/down/y", 503, "backend_unavailable"),
                                 ("/nosrv/x", 503, "backend_unavailable"), ("/nosrv/y", 503, "backend_unavailable"),
                                 ("/slow/x", 504, "backend_timeout")):
        r = tls_request(main, path, ca=pki.ca)
        assert r.status == want, (path, r)
        t.request(r)
        t.hit(category)


class _SyslogSink:
    """A UDP syslog receiver writing what it gets like rsyslog's traditional file format.

    HAProxy's rfc3164 datagram is `<PRI>Mmm dd hh:mm:ss host tag[pid]: msg`; rsyslog's
    RSYSLOG_TraditionalFileFormat writes `Mmm dd hh:mm:ss host tag[pid]: msg`, i.e. the
    same without the PRI.
    """

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.path = path
        self.lines: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"<"):
                data = data[data.index(b">") + 1:]
            self.lines.append(data.rstrip(b"\n") + b"\n")

    def close(self) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()
        self.sock.close()
        self.path.write_bytes(b"".join(self.lines))


def run(work: Path, pki: CorpusPKI, mode: str) -> tuple[Path, Tally, dict[str, int], str]:
    d = work / f"haproxy-{mode}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "haproxy.log"
    t, triggered = Tally(), {}
    with backends() as be:
        ports = {"main": free_port(), "verify": free_port()}
        sink = _SyslogSink(log) if mode == "syslog" else None
        log_line = (f"log 127.0.0.1:{sink.port} format rfc3164 local0 info" if sink
                    else "log stdout format raw local0 info")
        conf = d / "haproxy.cfg"
        conf.write_text(_conf(d, pki, ports, be, log_line, errorlogformat=(mode != "syslog")))
        chown_tree(work)
        stdout = subprocess.DEVNULL if sink else open(log, "wb")  # noqa: SIM115 (closed below)
        proc = run_bg(["haproxy", "-db", "-f", str(conf)], stdout=stdout, stderr=subprocess.PIPE)
        try:
            for p in ports.values():
                wait_port(p, proc=proc)
            time.sleep(0.5)  # let the health check mark nosrv's server down
            _drive_tls(pki, ports, t, triggered)
            if mode == "syslog":
                _drive_backends(pki, ports, t)
            time.sleep(0.3)
        finally:
            stop(proc)
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if sink:
                sink.close()
            else:
                stdout.close()
    return log, t, triggered, stderr


# What each driver action becomes in each log format: the category a reader of that line
# can know. HAProxy's fixed error line says only "SSL handshake failure" for a plain-HTTP
# request, a client's alert, no shared cipher, a refused protocol, a missing client
# certificate and a reset: nothing tells them apart, so the truth is other_tls_error.
# With error-log-format's fc_err/ssl_fc_err the OpenSSL reason code tells them apart.
# A reset mid-handshake is fc_err 34 ("SSL handshake failure") with no OpenSSL error in
# both formats: other_tls_error.
ACTION_CATEGORY = {
    "syslog": {
        "plain_http_on_tls_port": "other_tls_error",
        "client_rejected_cert": "other_tls_error",
        "no_shared_cipher": "other_tls_error",
        "protocol_mismatch": "other_tls_error",
        "client_cert_missing": "other_tls_error",
        "client_cert_invalid": "client_cert_invalid",  # "SSL client certificate not trusted"
        "handshake_eof": "handshake_eof_or_reset",  # "Connection closed during SSL handshake"
        "handshake_reset": "other_tls_error",
        "handshake_timeout": "handshake_timeout",  # "Timeout during SSL handshake"
    },
    "errorlogformat": {
        "plain_http_on_tls_port": "plain_http_on_tls_port",  # 0A00009C http request
        "client_rejected_cert": "client_rejected_cert",  # 0A000418 tlsv1 alert unknown ca
        "no_shared_cipher": "no_shared_cipher",  # 0A0000C1
        "protocol_mismatch": "protocol_mismatch",  # 0A000102 unsupported protocol
        "client_cert_missing": "client_cert_missing",  # 0A0000C7 peer did not return a certificate
        "client_cert_invalid": "client_cert_invalid",  # fc_err 31, ssl_c_err 20 / 10
        "handshake_eof": "handshake_eof_or_reset",  # fc_err 24
        "handshake_reset": "other_tls_error",  # fc_err 34, ssl_fc_err 0
        "handshake_timeout": "handshake_timeout",  # fc_err 26
    },
}

SIGNATURES = {
    "syslog": {
        "SSL handshake failure": r": SSL handshake failure$",
        "client certificate not trusted": r": SSL client certificate not trusted$",
        "closed during handshake": r": Connection closed during SSL handshake$",
        "timeout during handshake": r": Timeout during SSL handshake$",
        "503": r" 503 .* SC-- ",
        "504": r" 504 .* sH-- ",
    },
    "errorlogformat": {
        "fc_err 34 with a reason": r" 34/(?!0{16}/)[0-9A-F]{16}/",
        "fc_err 31": r" 31/0+A000086/",
        "fc_err 24": r" 24/0+/",
        "fc_err 34 without reason": r" 34/0{16}/",
        "fc_err 26": r" 26/0+/",
    },
}


def _expected_signatures(mode: str, triggered: dict[str, int], t: Tally) -> dict[str, tuple[str, int]]:
    sig = SIGNATURES[mode]
    n = triggered.get
    if mode == "syslog":
        failures = sum(n(a, 0) for a, c in ACTION_CATEGORY[mode].items() if c == "other_tls_error")
        counts = {"SSL handshake failure": failures, "client certificate not trusted": n("client_cert_invalid", 0),
                  "closed during handshake": n("handshake_eof", 0),
                  "timeout during handshake": n("handshake_timeout", 0),
                  "503": t.events["backend_unavailable"], "504": t.events["backend_timeout"]}
    else:
        with_reason = sum(n(a, 0) for a in ("plain_http_on_tls_port", "client_rejected_cert", "no_shared_cipher",
                                             "protocol_mismatch", "client_cert_missing"))
        counts = {"fc_err 34 with a reason": with_reason, "fc_err 31": n("client_cert_invalid", 0),
                  "fc_err 24": n("handshake_eof", 0), "fc_err 34 without reason": n("handshake_reset", 0),
                  "fc_err 26": n("handshake_timeout", 0)}
    return {k: (sig[k], v) for k, v in counts.items()}


def build(data: Path, work: Path, pki: CorpusPKI) -> None:
    out = fresh_case(data, "haproxy26")
    for mode, name in (("syslog", "haproxy_syslog.log"), ("errorlogformat", "haproxy_errorlogformat.log")):
        log, t, triggered, _ = run(work, pki, mode)
        for action, n in triggered.items():
            t.hit(ACTION_CATEGORY[mode][action], n)
        dest = out / name
        dest.write_bytes(log.read_bytes())
        check_signatures(dest, _expected_signatures(mode, triggered, t))
        # httplog has no TLS fields; httpslog ends with sni/version/cipher
        protocols = t.protocols if mode == "errorlogformat" else None
        ciphers = t.ciphers if mode == "errorlogformat" else None
        write_truth(dest, events=t.events, status=t.status, protocols=protocols, ciphers=ciphers,
                    extra={"driver_actions": dict(sorted(triggered.items()))})
        print(f"haproxy26 {mode}: {dict(t.events)} status {dict(t.status)} protocols {dict(protocols or {})}")
