"""End to end: `tlsfront serve` as a process, demo backends as processes, curl / openssl / Python ssl.

One proxy serves every vhost of this module (see STACK_CONFIG); each test uses its own vhost or path.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import (Proc, client_context, echo_lines, free_port, free_ports, read_response,
                     start_backend, start_proxy)
from stack import TLS_DEFAULTS

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")

STACK_CONFIG = """
[server]
allow_root = true  # CI runs as root; serving as root is refused otherwise
error_log = "{d}/error.log"
access_log = "{d}/access.log"
ssl_request_log = "{d}/ssl_request.log"
log_level = "info"
shutdown_grace_seconds = 5

[admin]
listen = "127.0.0.1:{p_admin}"
""" + TLS_DEFAULTS + """
[timeouts]
backend_response_header_seconds = 1.5
backend_connect_seconds = 2

[[quirk]]   # a legacy client that wants no close_notify (mod_ssl's ssl-unclean-shutdown)
attribute = "User-Agent"
pattern = "^LegacyUnclean/"
set = ["nokeepalive", "ssl-unclean-shutdown"]

[[vhost]]   # 0: address selection, 127.0.0.1
listen = "127.0.0.1:{p_tls}"
server_name = "localhost"
tls = true
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # 1: address selection, 127.0.0.2: another certificate on the same port
listen = "127.0.0.2:{p_tls}"
server_name = "other.test"
tls = {{ certificate = "{pki.other_cert}", key = "{pki.other_key}", chain = "{pki.intermediate_cert}" }}
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # 2: plain HTTP
listen = "127.0.0.1:{p_plain}"
server_name = "localhost"
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # 3: round robin with a refusing backend first
listen = "127.0.0.1:{p_rr}"
server_name = "rr.test"
tls = true
backends = ["http://127.0.0.1:{dead}", "http://127.0.0.1:{b1}", "http://127.0.0.1:{b2}"]

[[vhost]]   # 4: every backend down
listen = "127.0.0.1:{p_down}"
server_name = "down.test"
tls = true
backends = ["http://127.0.0.1:{dead2}"]

[[vhost]]   # 5: plain HTTP on this TLS port gets a redirect
listen = "127.0.0.1:{p_redirect}"
server_name = "localhost"
tls = true
plain_http_answer = "redirect"
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # 6: client certificates, exported (SSLOptions +StdEnvVars +ExportCertData)
listen = "127.0.0.1:{p_client}"
server_name = "localhost"
tls = {{ verify_client = "optional", ca_certificate_file = "{pki.client_ca_cert}" }}
forwarding = {{ client_cert_header = true }}
backends = ["http://127.0.0.1:{b1}"]
"""


@dataclass
class Stack:
    dir: Path
    pki: object
    proxy: Proc
    ports: dict

    def url(self, name: str, path: str = "/", host: str = "127.0.0.1", scheme: str = "https") -> str:
        return f"{scheme}://{host}:{self.ports[name]}{path}"

    def error_log(self) -> str:
        p = self.dir / "error.log"
        return p.read_text() if p.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.error_log().splitlines() if re.search(pattern, line)]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@pytest.fixture(scope="module", params=["socket", "memory"], ids=["tls-on-socket", "tls-memory-bio"])
def stack(pki, tmp_path_factory, request):
    """Every test here runs against both TLS layers: tlsio.py on the socket (the default) and
    Twisted's TLSMemoryBIOProtocol (TLSFRONT_TLS_IO=memory, the fallback)."""
    d = tmp_path_factory.mktemp("e2e")
    p_tls = free_ports(1, ("127.0.0.1", "127.0.0.2"))[0]
    names = ["b1", "b2", "dead", "dead2", "p_plain", "p_rr", "p_down", "p_redirect", "p_client", "p_admin"]
    ports = dict(zip(names, free_ports(len(names))))
    ports["p_tls"] = p_tls
    backends = [start_backend(d, ports["b1"], name="b1"), start_backend(d, ports["b2"], name="b2")]
    cfg = d / "tlsfront.toml"
    cfg.write_text(STACK_CONFIG.format(d=d, pki=pki, **ports))
    wait = [("127.0.0.1", ports[n]) for n in ("p_tls", "p_plain", "p_rr", "p_down", "p_redirect", "p_client",
                                             "p_admin")]
    proxy = start_proxy(d, cfg, wait + [("127.0.0.2", p_tls)], env={"TLSFRONT_TLS_IO": request.param})
    yield Stack(d, pki, proxy, ports)
    code = proxy.stop()
    for b in backends:
        b.stop()
    assert code == 0, proxy.output()  # SIGTERM: a graceful stop, exit status 0
    assert "Traceback" not in proxy.output()
    assert "TLSF0004" in (d / "error.log").read_text()  # shutdown complete


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if CURL is None:
        pytest.skip("curl is not installed (tests/install-sysdeps.sh installs it)")
    return subprocess.run([CURL, "-sS", "--max-time", "20", *args], capture_output=True, check=check)


# -- certificate chosen by address, not SNI ------------------------------------------------------

@pytest.mark.parametrize("ip,sni,cn", [
    ("127.0.0.1", "other.test", "localhost"),
    ("127.0.0.2", "localhost", "other.test"),
    ("127.0.0.1", None, "localhost"),
    ("127.0.0.2", None, "other.test"),
])
def test_python_ssl_certificate_by_local_address(stack, ip, sni, cn):
    ctx = client_context(stack.pki.ca_cert)
    ctx.check_hostname = False
    with socket.create_connection((ip, stack.ports["p_tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            assert subject["commonName"] == cn
            s.sendall(b"GET /which HTTP/1.1\r\nHost: " + ip.encode() + b"\r\nConnection: close\r\n\r\n")
            status, _, _, body = read_response(s)
            assert status == 200 and echo_lines(body)[""] == ["GET /which HTTP/1.1"]


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
def test_openssl_s_client_certificate_by_local_address(stack):
    for ip, sni, cn in (("127.0.0.2", "localhost", "other.test"), ("127.0.0.1", "other.test", "localhost")):
        out = subprocess.run(
            [OPENSSL, "s_client", "-connect", f"{ip}:{stack.ports['p_tls']}", "-servername", sni,
             "-CAfile", str(stack.pki.ca_cert), "-verify_return_error"],
            input=b"", capture_output=True, timeout=20).stdout.decode()
        assert re.search(rf"subject=\s*CN\s*=\s*{re.escape(cn)}", out), out
        assert "Verify return code: 0 (ok)" in out  # the chain (intermediate) is sent


def test_curl_by_address_with_verification(stack):
    for ip, cn in (("127.0.0.1", "localhost"), ("127.0.0.2", "other.test")):
        r = curl("--cacert", str(stack.pki.ca_cert), "-v", stack.url("p_tls", "/x", host=ip))
        assert re.search(rf"subject: CN={re.escape(cn)}", r.stderr.decode()), r.stderr.decode()
        assert echo_lines(r.stdout)[""] == ["GET /x HTTP/1.1"]


# -- what the backend saw --------------------------------------------------------------------------

def test_forwarded_headers_as_backend_saw_them(stack):
    r = curl("--cacert", str(stack.pki.ca_cert), stack.url("p_tls", "/fwd?a=1"),
             "-H", "Host: www.example.test:443", "-H", "X-Forwarded-For: 6.6.6.6",
             "-H", "X-Forwarded-Proto: http", "-H", "X-SSL-Client-Verify: SUCCESS",
             "-H", "X-SSL-Cipher: NULL", "-H", "X_SSL_Client_S_DN: CN=admin", "-H", "Client-Cert: :AAAA:",
             "-H", "Connection: X-Hop", "-H", "X-Hop: secret", "-H", "Keep-Alive: 300",
             "-H", "X-Kept: yes")
    seen = echo_lines(r.stdout)
    assert seen[""] == ["GET /fwd?a=1 HTTP/1.1"]
    assert seen["host"] == ["www.example.test:443"]  # Host preserved
    assert seen["x-forwarded-for"] == ["127.0.0.1"]  # replaced, not appended (untrusted peer)
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == ["www.example.test:443"]
    assert seen["x-forwarded-port"] == [str(stack.ports["p_tls"])]
    assert seen["x-kept"] == ["yes"]
    for gone in ("x-hop", "keep-alive", "connection", "x_ssl_client_s_dn", "client-cert"):
        assert gone not in seen, gone
    # The facts are ours: one of each, the client's copies gone.
    assert seen["x-ssl-client-verify"] == ["NONE"]
    assert seen["x-ssl-protocol"] == ["TLSv1.3"]
    assert seen["x-ssl-cipher"] != ["NULL"] and len(seen["x-ssl-cipher"]) == 1
    assert seen["x-ssl-cipher-bits"] in (["128"], ["256"])
    assert seen["x-ssl-session-reused"] == ["Initial"]


def test_client_certificate_facts(stack):
    pki = stack.pki
    r = curl("--cacert", str(pki.ca_cert), "--cert", str(pki.client_cert), "--key", str(pki.client_key),
             stack.url("p_client", "/cert"))
    seen = echo_lines(r.stdout)
    assert seen["x-ssl-client-verify"] == ["SUCCESS"]
    assert seen["x-ssl-client-s-dn"] == ["CN=alice"]
    assert seen["x-ssl-client-i-dn"] == ["CN=tlsfront test client CA"]
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    assert seen["x-ssl-client-serial"] == [f"{cert.serial_number:X}"]
    import base64
    from cryptography.hazmat.primitives.serialization import Encoding
    assert seen["client-cert"] == [":" + base64.b64encode(cert.public_bytes(Encoding.DER)).decode() + ":"]
    # Without a certificate on the same vhost: NONE and no DN.
    seen = echo_lines(curl("--cacert", str(pki.ca_cert), stack.url("p_client", "/nocert")).stdout)
    assert seen["x-ssl-client-verify"] == ["NONE"] and "x-ssl-client-s-dn" not in seen


def test_plain_vhost_forwarding(stack):
    seen = echo_lines(curl(stack.url("p_plain", "/p", scheme="http")).stdout)
    assert seen["x-forwarded-proto"] == ["http"] and "x-ssl-protocol" not in seen


# -- plain HTTP and garbage on a TLS port --------------------------------------------------------------

def test_plain_http_on_tls_port_gets_apache_400(stack):
    r = curl("-i", stack.url("p_tls", "/some/page?q=1", scheme="http"), check=False)
    out = r.stdout.decode()
    assert out.startswith("HTTP/1.1 400 Bad Request")
    assert "You're speaking plain HTTP to an SSL-enabled server port." in out
    assert "Instead use the HTTPS scheme to access this URL, please." in out
    assert f"https://127.0.0.1:{stack.ports['p_tls']}/some/page?q=1" in out
    lines = stack.wait_log(r"TLSF0204: .*GET /some/page\?q=1")
    assert len(lines) == 1 and "[client 127.0.0.1:" in lines[0]


def test_plain_http_redirect_mode(stack):
    r = curl("-i", stack.url("p_redirect", "/r?x=2", scheme="http"))
    out = r.stdout.decode()
    assert out.startswith("HTTP/1.1 301")
    assert f"Location: https://127.0.0.1:{stack.ports['p_redirect']}/r?x=2" in out


def test_garbage_on_tls_port_is_closed_and_logged(stack):
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as s:
        s.sendall(b"\x00\x01\x02garbage that is neither TLS nor HTTP\r\n")
        assert s.recv(100) == b""  # closed without an answer
    assert stack.wait_log(r"TLSF0205: .*first bytes \\x00\\x01\\x02garbage")


def test_failed_handshake_logged(stack):
    ctx = client_context(verify=False)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-SHA")  # no ECDHE: the server's cipher list refuses it
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw)
    assert stack.wait_log(r"TLSF0201: SSL handshake failed \(server localhost:\d+\): reason=\S+ alert=")


# -- backends: down, slow, round robin, mark-down, keep-alive -------------------------------------------

def test_backend_down_is_502_with_one_log_line(stack):
    r = curl("-i", "--cacert", str(stack.pki.ca_cert), stack.url("p_down", "/x"), check=False)
    out = r.stdout.decode()
    assert out.startswith("HTTP/1.1 502 Bad Gateway")
    assert out.endswith("Bad Gateway: the backend could not be reached or answered badly.\n")
    lines = stack.wait_log(rf"TLSF0301: backend 127.0.0.1:{stack.ports['dead2']} refused .*answered 502")
    assert len(lines) == 1 and f"vhost down.test:{stack.ports['p_down']}" in lines[0]


def test_backend_slow_is_504_with_one_log_line(stack):
    r = curl("-i", "--cacert", str(stack.pki.ca_cert), "-w", "\nTIMES %{time_pretransfer} %{time_starttransfer}",
             stack.url("p_tls", "/slow/5"), check=False)
    out, _, times = r.stdout.decode().rpartition("\nTIMES ")
    pretransfer, starttransfer = map(float, times.split())
    waited = starttransfer - pretransfer  # from the request sent to the first byte of the answer: curl's start,
    # the connection and the handshake are not in it. The proxy has the request only after it was sent and its
    # 1.5 s deadline starts then, so never less; the backend answers at 5 s, and a deadline applied late (2 s, 3 s)
    # would show: 0.5 s of slack for a loaded machine.
    assert 1.5 <= waited < 2.0, (pretransfer, starttransfer)
    assert out.startswith("HTTP/1.1 504 Gateway Timeout")
    lines = stack.wait_log(r"TLSF0303: backend .* timed out after 1.5s waiting for response headers")
    assert len(lines) == 1 and "answered 504" in lines[0]


def test_client_closing_mid_exchange_is_logged_as_499(stack):
    """A client that hangs up before the answer still gets one access line (nginx's 499,
    "client closed request") and one TLSF0403 error-log line; before, nothing was logged."""
    ctx = client_context(stack.pki.ca_cert)
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /slow/1?gone-early HTTP/1.1\r\nHost: localhost\r\n\r\n")
            time.sleep(0.3)  # the request reached the backend, whose answer takes 1 s
    lines = stack.wait_log(r"TLSF0403: client closed the connection before the response was complete")
    assert len(lines) == 1 and "GET /slow/1?gone-early" in lines[0] and "logged as 499" in lines[0], lines
    deadline = time.monotonic() + 5
    while True:
        access = [x for x in (stack.dir / "access.log").read_text().splitlines() if "gone-early" in x]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(access) == 1 and '"GET /slow/1?gone-early HTTP/1.1" 499 ' in access[0], access


def test_round_robin_and_refusing_backend_marked_down(stack):
    seen = []
    for i in range(6):
        r = curl("--cacert", str(stack.pki.ca_cert), stack.url("p_rr", f"/rr{i}"))
        seen.append(echo_lines(r.stdout)["backend"][0])
    b1, b2 = f"127.0.0.1:{stack.ports['b1']}", f"127.0.0.1:{stack.ports['b2']}"
    assert set(seen) == {b1, b2}  # every request answered, both live backends used
    assert all(seen[i] != seen[i + 1] for i in range(len(seen) - 1)), seen  # alternating
    down = stack.wait_log(rf"TLSF0304: backend 127.0.0.1:{stack.ports['dead']} marked down")
    assert len(down) == 1  # once, not once per request
    assert not [x for x in stack.error_log().splitlines() if "answered 502" in x and "rr.test" in x]


def test_keep_alive_to_backend_reuses_connections(stack):
    ctx = client_context(stack.pki.ca_cert)
    counts = []
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            for i in range(5):
                s.sendall(b"GET /ka%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i)
                status, _, headers, body = read_response(s)
                assert status == 200 and b"connection" not in headers
                counts.append(int(echo_lines(body)["connection-requests"][0]))
    assert counts == list(range(counts[0], counts[0] + 5))  # one backend connection, reused
    # A second client connection reuses the pooled backend connection too.
    r = curl("--cacert", str(stack.pki.ca_cert), stack.url("p_tls", "/again"))
    assert int(echo_lines(r.stdout)["connection-requests"][0]) > counts[-1]


def test_pipelined_requests_answered_in_order(stack):
    ctx = client_context(stack.pki.ca_cert)
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"".join(b"GET /pipe%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i for i in range(4)))
            lines = [echo_lines(read_response(s)[3])[""][0] for _ in range(4)]
    assert lines == [f"GET /pipe{i} HTTP/1.1" for i in range(4)]


def test_smuggling_attempt_refused_and_not_forwarded(stack):
    ctx = client_context(stack.pki.ca_cert)
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
            status, _, headers, body = read_response(s)
            assert status == 400 and headers[b"connection"] == b"close"
            assert s.recv(100) == b""
    assert stack.wait_log(r"TLSF0402: bad request .*Content-Length.*answered 400")


# -- bodies: chunked both ways, HTTP/1.0, large streams with bounded memory ------------------------------

def test_chunked_upload_and_download(stack, tmp_path):
    data = bytes(range(256)) * 4099
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    r = curl("--cacert", str(stack.pki.ca_cert), "-H", "Transfer-Encoding: chunked",
             "--data-binary", f"@{f}", stack.url("p_tls", "/upload"))
    seen = echo_lines(r.stdout)
    assert seen["transfer-encoding"] == ["chunked"]  # forwarded chunked, not buffered into a length
    assert seen["body-bytes"] == [str(len(data))]
    assert seen["body-sha256"] == [hashlib.sha256(data).hexdigest()]
    r = curl("-i", "--cacert", str(stack.pki.ca_cert), "--raw", stack.url("p_tls", "/chunked/100000"))
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert body.endswith(b"\r\n0\r\n\r\n")


def test_head_request_gets_length_without_body(stack):
    r = curl("-sS", "-I", "--cacert", str(stack.pki.ca_cert), stack.url("p_tls", "/bytes/12345"))
    head = r.stdout.decode()
    assert head.startswith("HTTP/1.1 200 OK") and "Content-Length: 12345" in head
    # and the connection stays usable: HEAD then GET on one connection
    ctx = client_context(stack.pki.ca_cert)
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"HEAD /bytes/99 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, headers, body = read_response(s, b"HEAD")
            assert status == 200 and headers[b"content-length"] == b"99" and body == b""
            s.sendall(b"GET /bytes/7 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert read_response(s)[3] == b"x" * 7


def test_http10_client_gets_no_chunks(stack):
    ctx = client_context(stack.pki.ca_cert)
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /chunked/5000 HTTP/1.0\r\n\r\n")
            status, version, headers, body = read_response(s)
    assert status == 200 and b"transfer-encoding" not in headers and len(body) == 5000
    assert headers[b"connection"] == b"close"


def test_expect_100_continue(stack, tmp_path):
    f = tmp_path / "c.bin"
    f.write_bytes(b"z" * 2_000_000)  # curl sends Expect: 100-continue above 1 MiB
    t0 = time.monotonic()
    r = curl("-v", "--cacert", str(stack.pki.ca_cert), "--data-binary", f"@{f}", stack.url("p_tls", "/cont"))
    assert time.monotonic() - t0 < 0.9  # curl did not wait its 1 s for the 100
    assert "HTTP/1.1 100 Continue" in r.stderr.decode()
    seen = echo_lines(r.stdout)
    assert seen["body-bytes"] == ["2000000"] and "expect" not in seen


LARGE = 300 * 1024 * 1024  # bytes each way; issue 2 asks 1 GiB, run once by hand (see the report)


def test_large_streams_both_ways_in_bounded_memory(stack):
    base_hwm = stack.proxy.status_kib("VmHWM")
    # Upload: generated by a pipe, chunked, never in a file.
    # (curl -T - streams stdin chunked; --data-binary @- would read it all into curl's memory)
    cmd = (f"head -c {LARGE} /dev/zero | {CURL} -sS --max-time 120 --cacert {stack.pki.ca_cert} "
           f"-T - {stack.url('p_tls', '/bigup')}")
    out = subprocess.run(cmd, shell=True, capture_output=True, check=True).stdout
    seen = echo_lines(out)
    assert seen[""] == ["PUT /bigup HTTP/1.1"] and seen["transfer-encoding"] == ["chunked"]
    assert seen["body-bytes"] == [str(LARGE)]
    assert seen["body-sha256"] == [hashlib.sha256(b"\0" * LARGE).hexdigest()]
    # Download with Content-Length, read by a slow-ish reader (curl --limit-rate is too slow for
    # this size; the pipe into sha256sum is the consumer).
    r = curl("--cacert", str(stack.pki.ca_cert), "-o", "/dev/null", "-w", "%{size_download} %{http_code}",
             stack.url("p_tls", f"/bytes/{LARGE}"))
    assert r.stdout.decode() == f"{LARGE} 200"
    r = curl("--cacert", str(stack.pki.ca_cert), "-o", "/dev/null", "-w", "%{size_download} %{http_code}",
             stack.url("p_tls", f"/chunked/{LARGE // 4}"))
    assert r.stdout.decode() == f"{LARGE // 4} 200"
    peak_mib = stack.proxy.status_kib("VmHWM") / 1024
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB (was {base_hwm / 1024:.0f} MiB before)"


def test_slow_reader_does_not_make_proxy_buffer(stack):
    """A client that stops reading: the proxy pauses the backend instead of buffering."""
    ctx = client_context(stack.pki.ca_cert)
    before = stack.proxy.status_kib("VmRSS")
    raw = socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % (200 * 1024 * 1024))
        s.recv(1000)
        time.sleep(1.5)  # the backend could send 200 MiB in this time if nothing pushed back
        grown_mib = (stack.proxy.status_kib("VmRSS") - before) / 1024
        assert grown_mib < 30, f"RSS grew {grown_mib:.0f} MiB with a stalled reader"
    finally:
        s.close()


# -- logs ------------------------------------------------------------------------------------------------

def test_access_and_ssl_request_logs(stack):
    curl("--cacert", str(stack.pki.ca_cert), "-A", "tlsfront-e2e/1", stack.url("p_tls", "/logged"))
    deadline = time.monotonic() + 5
    pattern = re.compile(rf'^localhost:{stack.ports["p_tls"]} 127\.0\.0\.1 - - \[[^]]+\] "GET /logged HTTP/1\.1" '
                         r'200 \d+ "-" "tlsfront-e2e/1" -$', re.M)
    while time.monotonic() < deadline and not pattern.search((stack.dir / "access.log").read_text()):
        time.sleep(0.05)
    assert pattern.search((stack.dir / "access.log").read_text())
    ssl_log = (stack.dir / "ssl_request.log").read_text()
    assert re.search(rf'127\.0\.0\.1 TLSv1\.3 TLS_\S+ "GET /logged HTTP/1\.1" \d+ \d+\.\d{{6}} new '
                     rf'localhost:{stack.ports["p_tls"]}$', ssl_log, re.M)  # the vhost label, as in access.log


def test_admin_health_and_metrics_count_traffic(stack):
    r = curl(f"http://127.0.0.1:{stack.ports['p_admin']}/healthz")
    assert b'"status": "ok"' in r.stdout or b'"status":"ok"' in r.stdout
    curl("--cacert", str(stack.pki.ca_cert), stack.url("p_tls", "/counted"))
    text = curl(f"http://127.0.0.1:{stack.ports['p_admin']}/metrics").stdout.decode()
    label = f'vhost="localhost:{stack.ports["p_tls"]}"'
    ok = [line for line in text.splitlines()
          if line.startswith("tlsfront_http_requests_total{") and label in line and 'code="2xx"' in line]
    assert ok and float(ok[0].rsplit(" ", 1)[1]) >= 1, text[:2000]
    hs = [line for line in text.splitlines() if line.startswith("tlsfront_tls_handshakes_total{")
          and label in line and 'result="ok"' in line]
    assert hs and float(hs[0].rsplit(" ", 1)[1]) >= 1


# -- TLS shutdown, signals ------------------------------------------------------------------------------

def tls_exchange(stack, request: bytes) -> tuple[bytes, bool, bool]:
    """Send `request` over TLS (memory BIO); read to the end.
    Returns (plaintext, close_notify received, TCP FIN received)."""
    ctx = client_context(stack.pki.ca_cert)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=5) as s:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                incoming.write(s.recv(65536))
        tls.write(request)
        s.sendall(outgoing.read())
        plain, close_notify, fin = b"", False, False
        while True:
            data = s.recv(65536)
            if not data:
                fin = True
                incoming.write_eof()
            else:
                incoming.write(data)
            try:
                while True:
                    chunk = tls.read(65536)
                    if not chunk:  # CPython: b"" once close_notify was read (an EOF raises)
                        close_notify = True
                        break
                    plain += chunk
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError) as exc:
                close_notify = isinstance(exc, ssl.SSLZeroReturnError)
                break
            if close_notify or fin:
                break
        if not fin:
            fin = s.recv(10) == b""  # the FIN follows without waiting for our close_notify
    return plain, close_notify, fin


def test_standard_tls_shutdown_sends_close_notify(stack):
    """mod_ssl's default: close_notify sent, then FIN, without waiting for the client's."""
    plain, close_notify, fin = tls_exchange(
        stack, b"GET /bye HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in plain
    assert close_notify and fin


def test_unclean_shutdown_quirk_sends_no_close_notify(stack):
    plain, close_notify, fin = tls_exchange(
        stack, b"GET /legacy HTTP/1.1\r\nHost: localhost\r\nUser-Agent: LegacyUnclean/1.0\r\n\r\n")
    status_line, _, rest = plain.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK" and b"Connection: close\r\n" in rest  # nokeepalive
    assert rest.endswith(b"body-sha256: " + hashlib.sha256(b"").hexdigest().encode() + b"\n")  # whole body
    assert not close_notify and fin


def test_sigterm_lets_running_request_finish_and_sigusr1_reopens_logs(pki, tmp_path):
    b_port, p_port = free_ports(2)
    received = tmp_path / "received.txt"
    backend = start_backend(tmp_path, b_port, record=received)
    cfg = tmp_path / "t.toml"
    cfg.write_text(f"""
[server]
allow_root = true  # CI runs as root; serving as root is refused otherwise
error_log = "{tmp_path}/error.log"
access_log = "{tmp_path}/access.log"
shutdown_grace_seconds = 10
[[vhost]]
listen = "127.0.0.1:{p_port}"
tls = {{ certificate = "{pki.server_cert}", key = "{pki.server_key}" }}
backends = ["http://127.0.0.1:{b_port}"]
""")
    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", p_port)], name="sig")
    try:
        deadline = time.monotonic() + 10  # listening comes before the logs are open: wait for them
        while "TLSF0001" not in ((tmp_path / "error.log").exists() and (tmp_path / "error.log").read_text()
                                 or "") and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp_path / "access.log").rename(tmp_path / "access.log.1")
        (tmp_path / "error.log").rename(tmp_path / "error.log.1")
        proxy.popen.send_signal(__import__("signal").SIGUSR1)
        deadline = time.monotonic() + 5
        while not (tmp_path / "error.log").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "TLSF0008" in (tmp_path / "error.log").read_text()
        slow = subprocess.Popen([CURL or "curl", "-sS", "-k", f"https://127.0.0.1:{p_port}/slow/1"],
                                stdout=subprocess.PIPE)
        # The request is at the backend (its record says so; was: a fixed 0.4 s, in which a loaded
        # machine had not always started curl and done the handshake: SIGTERM then closed an idle
        # connection and curl failed).
        deadline = time.monotonic() + 15
        while not (received.exists() and b"/slow/1" in received.read_bytes()):
            assert time.monotonic() < deadline and slow.poll() is None, "the request never reached the backend"
            time.sleep(0.05)
        proxy.popen.send_signal(__import__("signal").SIGTERM)
        out, _ = slow.communicate(timeout=10)
        assert echo_lines(out)[""] == ["GET /slow/1 HTTP/1.1"]  # answered despite SIGTERM
        assert proxy.popen.wait(10) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p_port), timeout=1).close()
        assert "GET /slow/1" in (tmp_path / "access.log").read_text()  # the reopened file
        log = (tmp_path / "error.log").read_text()
        assert "TLSF0003" in log and "TLSF0004" in log
    finally:
        proxy.stop()
        backend.stop()


def test_max_connections_refuses_more_and_admin_still_answers(pki, tmp_path):
    b_port, p_port, a_port = free_ports(3)
    backend = start_backend(tmp_path, b_port)
    cfg = tmp_path / "t.toml"
    cfg.write_text(f"""
[server]
allow_root = true  # CI runs as root; serving as root is refused otherwise
workers = 1
[admin]
listen = "127.0.0.1:{a_port}"
[limits]
max_connections = 3
[[vhost]]
listen = "127.0.0.1:{p_port}"
backends = ["http://127.0.0.1:{b_port}"]
""")
    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", p_port), ("127.0.0.1", a_port)], name="maxconn")
    held = []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", p_port), timeout=5)
            s.sendall(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(s)[0] == 200
            held.append(s)  # kept alive: each counts
        extra = socket.create_connection(("127.0.0.1", p_port), timeout=5)
        extra.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        try:
            assert extra.recv(100) == b""  # closed at once, no answer
        except ConnectionResetError:
            pass
        extra.close()
        r = curl(f"http://127.0.0.1:{a_port}/healthz")
        assert b"ok" in r.stdout
        held.pop().close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the freed slot takes a new client
            s = socket.create_connection(("127.0.0.1", p_port), timeout=5)
            s.sendall(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
            try:
                if read_response(s)[0] == 200:
                    s.close()
                    break
            except (ConnectionError, OSError):
                pass
            s.close()
            time.sleep(0.1)
        else:
            raise AssertionError("no slot freed after closing a connection")
    finally:
        for s in held:
            s.close()
        proxy.stop()
        backend.stop()


def test_startup_and_reload_log_prng_key_mode_expiry_and_warnings(tmp_path):
    """Issue 5: the PRNG check's result is logged at start-up (TLSF0014); a group-readable key
    (TLSF0102), a certificate 3 days from its end (TLSF0103) and the loader's other warnings
    (TLSF0106: /dev/random may block) are logged in the error log, at start and again on SIGHUP."""
    import datetime as dt
    import os
    import signal

    from tlsfront import certgen

    now = dt.datetime.now(dt.timezone.utc)
    leaf = certgen.issue("soon.test", ip_addresses=("127.0.0.1",), not_before=now - dt.timedelta(days=80),
                         not_after=now + dt.timedelta(days=3))
    cert, key = tmp_path / "soon.crt", tmp_path / "soon.key"
    leaf.write(cert, key)
    os.chmod(key, 0o640)
    b_port, p_port = free_ports(2)
    cfg = tmp_path / "t.toml"
    cfg.write_text(f"""
[server]
allow_root = true  # CI runs as root; serving as root is refused otherwise
workers = 1
error_log = "{tmp_path}/error.log"
random_seed = ["startup builtin", "startup file:/dev/random 16"]
[[vhost]]
listen = "127.0.0.1:{p_port}"
tls = {{ certificate = "{cert}", key = "{key}" }}
backends = ["http://127.0.0.1:{b_port}"]
""")
    log_path = tmp_path / "error.log"

    def wait_for(pattern: str, count: int = 1) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = log_path.read_text() if log_path.exists() else ""
            if len(re.findall(pattern, text)) >= count:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} x{count} not in the error log:\n{text}")

    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", p_port)], name="startup-report")
    try:
        log = wait_for("TLSF0001")
        head = log[:log.index("TLSF0001")]  # written before "resuming normal operations"
        assert re.search(r"\[ssl:notice\] \[pid \d+\] TLSF0014: PRNG seeded \(startup: builtin, "
                         r"file:/dev/random( \(\d+ bytes\))?; \d+ bytes added, RAND_status OK\)", head), head
        assert re.search(rf"\[ssl:warn\] \[pid \d+\] TLSF0102: private key file {re.escape(str(key))} is readable "
                         r"by group or others \(mode 0640\)", head), head
        assert re.search(rf"\[ssl:warn\] \[pid \d+\] TLSF0103: certificate {re.escape(str(cert))} of vhost "
                         rf"127.0.0.1:{p_port} \(CN soon.test, serial [0-9a-f]+\) expires \S+ \S+ UTC "
                         r"\((?:2\.9|3\.0) days left\)", head), head
        assert re.search(r"\[core:warn\] \[pid \d+\] TLSF0106: configuration warning: .*/dev/random may block", head)
        assert head.count("TLSF0106") == 1  # the key-mode warning is TLSF0102's, not repeated
        proxy.popen.send_signal(signal.SIGHUP)
        log = wait_for("TLSF0006")
        for message_id in ("TLSF0014", "TLSF0102", "TLSF0103", "TLSF0106"):
            assert log.count(message_id) == 2, (message_id, log)
    finally:
        proxy.stop()
