"""Apache httpd 2.4 + mod_ssl: provoke each category for real and count it.

One run = one Apache (`apache2 -f <conf> -DFOREGROUND`, as www-data, modules from
/usr/lib/apache2/modules) with three TLS vhosts on free 127.0.0.1 ports:

- `main`:   TLS 1.2/1.3, ECDSA-only AES-GCM/ChaCha suites; mod_proxy to three backends;
- `verify`: `SSLVerifyClient require` against the corpus client CA;
- `legacy`: every protocol, `@SECLEVEL=0` (so TLS 1.0/1.1 requests land in ssl_request_log).

Then a series of Apache starts that must fail (key/cert mismatch, wrong pass phrase from
an `SSLPassPhraseDialog exec:` program, an unreadable certificate, a mutex directory
without search permission), each appended to one startup error log.
"""

from __future__ import annotations

import os
import random
import re
import signal
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import (
    CorpusPKI, Tally, backends, chown_tree, client_hello_prefix, connect_close,
    free_port, idle_until_closed, plain_http, provoke_refusals, run_bg, stop, tls_request,
    wait_port,
)

MODULES = Path("/usr/lib/apache2/modules")

# Upstream httpd-ssl.conf's ssl_request_log format (Debian ships none).
SSL_REQUEST_FORMAT = r'"%t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x \"%r\" %b"'


def _base(d: Path, mpm: str, error_log: Path, error_log_format: str | None, listens: list[int],
          modules: tuple[str, ...], log_level: str = "info ssl:info") -> str:
    lines = [
        f"ServerRoot {d}",
        f"PidFile {d}/run/httpd.pid",
        f"DefaultRuntimeDir {d}/run",
        f"Mutex file:{d}/run default",
        f"LoadModule mpm_{mpm}_module {MODULES}/mod_mpm_{mpm}.so",
        *(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in ("authz_core", "mime", "dir", *modules)),
        "ServerName localhost",
        "TypesConfig /etc/mime.types",
        f"ErrorLog {error_log}",
        f"LogLevel {log_level}",
        # no TCP_DEFER_ACCEPT: accept silent connections at once, so handshake timeouts and
        # connect-then-close are seen by httpd (with "data" the kernel hides them)
        "AcceptFilter http none",
        "AcceptFilter https none",
        f'DocumentRoot "{d}/htdocs"',
        f'<Directory "{d}/htdocs">\n  Require all granted\n</Directory>',
        "StartServers 1" if mpm == "prefork" else
        "StartServers 1\nServerLimit 2\nThreadsPerChild 16\n"
        "MaxRequestWorkers 32\nMinSpareThreads 4\nMaxSpareThreads 32",
        *(f"Listen 127.0.0.1:{p}" for p in listens),
    ]
    if error_log_format:
        lines.insert(lines.index(f"LogLevel {log_level}"), f'ErrorLogFormat "{error_log_format}"')
    return "\n".join(lines) + "\n"


def _write_htdocs(d: Path) -> None:
    (d / "htdocs").mkdir(parents=True, exist_ok=True)
    (d / "htdocs" / "index.html").write_text("<p>corpus</p>\n")
    (d / "run").mkdir(exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)


def _main_conf(d: Path, pki: CorpusPKI, ports: dict[str, int], be: dict[str, int], mpm: str,
               error_log_format: str | None, log_level: str = "info ssl:info") -> str:
    logs = d / "logs"
    conf = _base(d, mpm, logs / "error.log", error_log_format,
                 [ports["main"], ports["verify"], ports["legacy"]],
                 ("ssl", "socache_shmcb", "proxy", "proxy_http", "reqtimeout"), log_level)
    conf += f"""
LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\"" combined
LogFormat "%v:%p %h %l %u %t \\"%r\\" %>s %O \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\"" vhost_combined
# GlobalLog (2.4.19+): one file for every vhost, although the vhosts have CustomLogs of their own
GlobalLog {logs}/access.log combined
GlobalLog {logs}/other_vhosts_access.log vhost_combined
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
GlobalLog {logs}/access_common.log common
SSLSessionCache shmcb:{d}/run/ssl_scache(512000)
# mod_reqtimeout (2.4.39+): give up on a silent TLS handshake after 2 s (handshake_timeout)
RequestReadTimeout handshake=2 header=5 body=5
SSLCertificateFile {pki.server_cert}
SSLCertificateKeyFile {pki.server_key}

<VirtualHost 127.0.0.1:{ports['main']}>
  ServerName main.test
  SSLEngine on
  SSLProtocol -all +TLSv1.2 +TLSv1.3
  SSLCipherSuite ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305
  CustomLog {logs}/ssl_request.log {SSL_REQUEST_FORMAT}
  ProxyPass /down/ http://127.0.0.1:{be['dead']}/ retry=0
  ProxyPass /slow/ http://127.0.0.1:{be['silent']}/ retry=0 timeout=1
  ProxyPass /app/ http://127.0.0.1:{be['ok']}/ retry=0
</VirtualHost>

<VirtualHost 127.0.0.1:{ports['verify']}>
  ServerName verify.test
  SSLEngine on
  SSLProtocol -all +TLSv1.2 +TLSv1.3
  SSLVerifyClient require
  SSLVerifyDepth 1
  SSLCACertificateFile {pki.client_ca}
  CustomLog {logs}/ssl_request.log {SSL_REQUEST_FORMAT}
</VirtualHost>

<VirtualHost 127.0.0.1:{ports['legacy']}>
  ServerName legacy.test
  SSLEngine on
  SSLProtocol all
  SSLCipherSuite DEFAULT:@SECLEVEL=0
  CustomLog {logs}/ssl_request.log {SSL_REQUEST_FORMAT}
</VirtualHost>
"""
    return conf


def _drive(pki: CorpusPKI, ports: dict[str, int], t: Tally) -> None:
    """Every provocation against a running Apache; each counted as it is done."""
    main, verify, legacy = ports["main"], ports["verify"], ports["legacy"]
    # good requests, TLS 1.3 and 1.2 (status and protocol truth)
    for path, want in (("/", 200), ("/app/x", 200), ("/nope", 404), ("/app/missing", 404)):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            r = tls_request(main, path, ca=pki.ca, version=version)
            assert r.status == want, (path, r)
            t.request(r)
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2):
        r = tls_request(legacy, "/", ca=pki.ca, version=version, ciphers="DEFAULT:@SECLEVEL=0")
        assert r.status == 200, r
        t.request(r)
    r = tls_request(verify, "/", ca=pki.ca, cert=(pki.client_cert, pki.client_key))
    assert r.status == 200, r
    t.request(r)

    # plain HTTP to the TLS port: mod_ssl answers 400 (AH02261) and logs it in the access logs
    for _ in range(3):
        code = plain_http(main)
        assert code == 400, code
        t.hit("plain_http_on_tls_port")
        t.status["4xx"] += 1
    # curl without our CA rejects the server's certificate (alert unknown ca); s_client with
    # ciphers and protocols the server refuses
    provoke_refusals(main, t)
    # client certificates: none, wrong CA, expired
    for _ in range(2):
        r = tls_request(verify, "/")
        assert r.status == 0, r
        t.hit("client_cert_missing")
    r = tls_request(verify, "/", cert=(pki.stranger_cert, pki.stranger_key))
    assert r.status == 0, r
    t.hit("client_cert_invalid")
    r = tls_request(verify, "/", cert=(pki.expired_cert, pki.expired_key))
    assert r.status == 0, r
    t.hit("client_cert_invalid")
    # dead backend (connection refused) and silent backend (read timeout)
    for _ in range(2):
        r = tls_request(main, "/down/x", ca=pki.ca)
        assert r.status == 503, r
        t.request(r)
        t.hit("backend_unavailable")
    # mod_proxy_http answers 502 (not 504) when the status line read times out (AH01102)
    r = tls_request(main, "/slow/x", ca=pki.ca)
    assert r.status in (502, 504), r
    t.request(r)
    t.hit("backend_timeout")
    # handshake EOF/reset: half a ClientHello, then FIN; then RST
    hello = client_hello_prefix()
    connect_close(main, send=hello)
    t.hit("handshake_eof_or_reset")
    connect_close(main)
    t.hit("handshake_eof_or_reset")
    # An RST after half a ClientHello: httpd 2.4 logs only AH01964 + AH01998 ("abortive
    # shutdown", also logged after every failed handshake) at info: nothing to classify.
    connect_close(main, send=hello, reset=True)
    # a silent client: mod_reqtimeout's handshake timeout
    idle_until_closed(main)
    t.hit("handshake_timeout")
    time.sleep(0.5)


def _drive_concurrent(pki: CorpusPKI, ports: dict[str, int], t: Tally, rounds: int = 25) -> None:
    """Failing handshakes of several kinds at once from 12 threads, so that httpd's worker
    threads interleave their AH02008 and `SSL Library Error:` lines: the lines of one event
    are then joined only by pid/tid, as in a busy production log."""
    main, verify = ports["main"], ports["verify"]

    def alert_unknown_ca() -> str:
        r = tls_request(main, "/", ca=pki.client_ca)  # trusts the wrong CA: rejects the server
        assert r.status == 0 and "CERTIFICATE_VERIFY_FAILED" in r.error, r
        return "client_rejected_cert"

    def no_shared_cipher() -> str:
        r = tls_request(main, "/", version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA256:AES256-SHA")
        assert r.status == 0, r
        return "no_shared_cipher"

    def old_protocol() -> str:
        r = tls_request(main, "/", version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
        assert r.status == 0, r
        return "protocol_mismatch"

    def no_client_cert() -> str:
        r = tls_request(verify, "/")
        assert r.status == 0, r
        return "client_cert_missing"

    def stranger_cert() -> str:
        r = tls_request(verify, "/", cert=(pki.stranger_cert, pki.stranger_key))
        assert r.status == 0, r
        return "client_cert_invalid"

    def plain() -> str:
        assert plain_http(main) == 400
        t.status["4xx"] += 1
        return "plain_http_on_tls_port"

    def good() -> str:
        r = tls_request(main, "/", ca=pki.ca)
        assert r.status == 200, r
        t.request(r)
        return ""

    jobs = [alert_unknown_ca, no_shared_cipher, old_protocol, no_client_cert, stranger_cert, plain, good] * rounds
    random.Random(3).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=24) as pool:
        for category in pool.map(lambda job: job(), jobs):
            if category:
                t.hit(category)
    time.sleep(0.5)


def interleavings(error_log: Path) -> int:
    """How many `SSL Library Error:` lines do not directly follow a line of their own pid/tid."""
    n, prev = 0, None
    for line in error_log.read_text(errors="replace").splitlines():
        m = re.search(r"\[pid (\d+)(?::tid (\d+))?\]", line)
        key = m.groups() if m else None
        if "SSL Library Error:" in line and key != prev:
            n += 1
        prev = key
    return n


def run_main(out: Path, work: Path, pki: CorpusPKI, *, mpm: str = "event",
             error_log_format: str | None = None, concurrent: bool = False,
             log_level: str = "info ssl:info") -> Tally:
    d = work / f"apache-{mpm}"
    _write_htdocs(d)
    t = Tally()
    with backends() as be:
        ports = {"main": free_port(), "verify": free_port(), "legacy": free_port()}
        conf = d / "httpd.conf"
        conf.write_text(_main_conf(d, pki, ports, be, mpm, error_log_format, log_level))
        chown_tree(work)
        proc = run_bg(["apache2", "-f", str(conf), "-DFOREGROUND"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for p in ports.values():
                wait_port(p, proc=proc)
            (_drive_concurrent if concurrent else _drive)(pki, ports, t)
        finally:
            stop(proc)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("error.log", "access.log", "access_common.log", "other_vhosts_access.log", "ssl_request.log"):
        (out / name).write_bytes((d / "logs" / name).read_bytes())
    return t


STARTUP_FAILURES = ("key_cert_mismatch", "passphrase_failure", "cert_file_unreadable",
                    "mutex_permission_denied", "session_cache_error")


def _failing_conf(d: Path, pki: CorpusPKI, kind: str, log: Path) -> str:
    """A config that passes `-t` but makes httpd's post-config (mod_ssl init) fail for `kind`."""
    port = free_port()
    cert, key, extra = pki.server_cert, pki.server_key, ""
    if kind == "key_cert_mismatch":
        key = pki.other_key
    elif kind == "passphrase_failure":
        prog = d / "wrong-pass.sh"
        # mod_ssl runs the program with "servername:port" and the algorithm as arguments and
        # reads the pass phrase from its stdout (mod_ssl docs, SSLPassPhraseDialog exec:)
        prog.write_text("#!/bin/sh\necho not-the-pass-phrase\n")
        prog.chmod(0o755)
        key, extra = pki.enc_key, f"SSLPassPhraseDialog exec:{prog}"
    elif kind == "cert_file_unreadable":
        cert = d / "unreadable.crt"
        cert.write_bytes(pki.server_cert.read_bytes())
        cert.chmod(0o000)  # owned by the run user (chown_tree), who may not read it
    elif kind == "mutex_permission_denied":
        nomutex = d / "nomutex"
        nomutex.mkdir(exist_ok=True)
        nomutex.chmod(0o600)  # no search (x) permission: no lock file can be made inside
        extra = f"Mutex file:{nomutex} ssl-cache"
    elif kind == "session_cache_error":
        # shmcb falls back to anonymous shared memory when its file cannot be made;
        # dbm cannot: a DBM file in a missing directory fails mod_ssl's init
        extra = f"SSLSessionCache dbm:{d}/no-such-dir/ssl_scache"
    conf = _base(d, "event", log, None, [port], ("ssl", "socache_shmcb", "socache_dbm"))
    if kind != "session_cache_error":
        conf += f"SSLSessionCache shmcb:{d}/run/ssl_scache(512000)\n"
    conf += f"""{extra}
<VirtualHost 127.0.0.1:{port}>
  ServerName broken-{kind.replace('_', '-')}.test
  SSLEngine on
  SSLCertificateFile {cert}
  SSLCertificateKeyFile {key}
</VirtualHost>
"""
    return conf


def run_startup_failures(out: Path, work: Path, pki: CorpusPKI) -> Tally:
    """Start httpd once per kind with a broken config; each must fail. One log for all."""
    t = Tally()
    out.mkdir(parents=True, exist_ok=True)
    log_dir = work / "apache-startup-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "error.log"
    for kind in STARTUP_FAILURES:
        d = work / f"apache-broken-{kind}"
        _write_htdocs(d)
        conf = d / "httpd.conf"
        conf.write_text(_failing_conf(d, pki, kind, log))
        chown_tree(work)
        if kind == "cert_file_unreadable":
            (d / "unreadable.crt").chmod(0o000)
        proc = run_bg(["apache2", "-f", str(conf), "-DFOREGROUND"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # our own httpd's group: parent and children
            proc.communicate()
            raise RuntimeError(f"httpd started although {kind} should have stopped it") from None
        if proc.returncode == 0:
            raise RuntimeError(f"httpd exited 0 although {kind} should have failed it")
        t.hit(kind)
        t.notes.append(f"{kind}: httpd exited {proc.returncode}, stderr {err.decode(errors='replace')!r}")
    (out / "error_startup.log").write_bytes(log.read_bytes())
    return t
