"""Issue 7, switching between HTTP and HTTPS, checked with curl against a real `tlsfront serve`.

- a plain vhost with `redirect_to_https`: 301 to https://name:port/path?query, no HSTS on it;
- HSTS (`hsts_max_age_seconds`) on HTTPS responses only (RFC 6797 7.2: never over plain HTTP);
- the FAQ's `:SSL` / `:NOSSL` suffixes (`ssl_nossl_suffix_redirects`);
- plain HTTP on a TLS port: Apache's 400 (default) or a 301 (`plain_http_answer = "redirect"`),
  with the name the client used (test_e2e.py checks both with an IP address).

curl follows the redirects (`-L`) to prove the Location is one a client can use: the
certificate must verify for the name, and the backend must see the path and query.
"""

from __future__ import annotations

import shutil
import socketserver
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import Proc, echo_lines, free_ports, start_backend, start_proxy
from stack import ONE_WORKER_SERVER, TLS_DEFAULTS
from rawtls import RawTLSClient

CURL = shutil.which("curl")
NAME = "www.example.test"  # in the test server certificate's SANs
SHOP = "localhost"  # the :SSL/:NOSSL pair (another name in the certificate)

CONFIG = ONE_WORKER_SERVER + TLS_DEFAULTS + """
[[quirk]]   # clients from 127.0.0.2 get HTTP/1.0 status lines (redirects included)
attribute = "Remote_Addr"
pattern = "^127\\\\.0\\\\.0\\\\.2$"
set = ["force-response-1.0"]

[[vhost]]   # plain: everything to HTTPS
listen = "127.0.0.1:{p_http}"
server_name = "{name}"
redirect_to_https = "{name}:{p_tls}"

[[vhost]]   # its TLS vhost, with HSTS; plain HTTP on this port gets Apache's 400
listen = "127.0.0.1:{p_tls}"
server_name = "{name}"
tls = true
hsts_max_age_seconds = 600
ssl_nossl_suffix_redirects = true
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # HSTS, and a backend that sends its own
listen = "127.0.0.1:{p_tls_sts}"
server_name = "{name}"
tls = true
hsts_max_age_seconds = 600
backends = ["http://127.0.0.1:{sts_backend}"]

[[vhost]]   # HSTS, and no backend answers
listen = "127.0.0.1:{p_tls_dead}"
server_name = "{name}"
tls = true
hsts_max_age_seconds = 600
backends = ["http://127.0.0.1:{dead}"]

[[vhost]]   # plain HTTP on this TLS port gets a 301 (nginx's 497 behaviour)
listen = "127.0.0.1:{p_tls_r}"
server_name = "{name}"
tls = true
hsts_max_age_seconds = 600
plain_http_answer = "redirect"
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]   # the :SSL / :NOSSL pair
listen = "127.0.0.1:{p_shop_http}"
server_name = "{shop}"
ssl_nossl_suffix_redirects = true
backends = ["http://127.0.0.1:{b1}"]

[[vhost]]
listen = "127.0.0.1:{p_shop_tls}"
server_name = "{shop}"
tls = true
ssl_nossl_suffix_redirects = true
backends = ["http://127.0.0.1:{b1}"]
"""


@dataclass
class Reply:
    """One response of a curl run (the last one when curl followed redirects)."""

    status_line: str
    headers: dict[str, list[str]]  # lower-case name -> values
    body: bytes
    hops: list[str] = field(default_factory=list)  # status lines of every response, in order
    verbose: str = ""
    hop_headers: list[dict[str, list[str]]] = field(default_factory=list)  # headers of every response

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def one(self, name: str) -> str | None:
        values = self.headers.get(name.lower(), [])
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None


@dataclass
class Front:
    dir: Path
    pki: object
    ports: dict

    def curl(self, url: str, *args: str) -> Reply:
        """curl (with --resolve for our names, our CA): every hop's head (-D), the last body (-o)."""
        if CURL is None:
            pytest.skip("curl is not installed (tests/install-sysdeps.sh installs it)")
        resolve = []
        for host in (NAME, SHOP):
            for port in self.ports.values():
                resolve += ["--resolve", f"{host}:{port}:127.0.0.1"]
        heads, body = self.dir / "curl.heads", self.dir / "curl.body"
        done = subprocess.run([CURL, "-sS", "-v", "--max-time", "10", "--cacert", str(self.pki.ca_cert),
                               "-D", str(heads), "-o", str(body), *resolve, *args, url],
                              capture_output=True, timeout=30)
        verbose = done.stderr.decode(errors="replace")
        assert done.returncode == 0, verbose
        return parse(heads.read_bytes(), body.read_bytes(), verbose)


def parse(heads: bytes, body: bytes, verbose: str) -> Reply:
    """curl -D output (one head per hop when it follows redirects) -> the last reply and the hops."""
    blocks = [b for b in heads.decode("latin-1").split("\r\n\r\n") if b.strip()]
    hops = [b.split("\r\n", 1)[0] for b in blocks]
    all_headers = []
    for block in blocks:
        headers: dict[str, list[str]] = {}
        for line in block.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        all_headers.append(headers)
    return Reply(hops[-1], all_headers[-1], body, hops, verbose, all_headers)


class _OwnHSTSBackend(socketserver.StreamRequestHandler):
    """A backend that sends its own Strict-Transport-Security (here: "forget HSTS")."""

    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head = b"" if head == b"" and line == b"\r\n" else head + line
            self.wfile.write(b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=0\r\n"
                             b"Content-Length: 3\r\n\r\nok\n")


@pytest.fixture(scope="module")
def front(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("redirects")
    names = ["b1", "dead", "p_http", "p_tls", "p_tls_r", "p_shop_http", "p_shop_tls", "p_tls_dead", "p_tls_sts"]
    ports = dict(zip(names, free_ports(len(names))))
    backend = start_backend(d, ports["b1"], name="b1")
    sts = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _OwnHSTSBackend)
    sts.daemon_threads = True
    threading.Thread(target=sts.serve_forever, daemon=True).start()
    cfg = d / "tlsfront.toml"
    cfg.write_text(CONFIG.format(d=d, pki=pki, name=NAME, shop=SHOP, sts_backend=sts.server_address[1], **ports))
    proxy: Proc = start_proxy(d, cfg, [("127.0.0.1", ports[n]) for n in names[2:]])
    yield Front(d, pki, {k: v for k, v in ports.items() if k.startswith("p_")})
    code = proxy.stop()
    backend.stop()
    sts.shutdown()
    sts.server_close()
    assert code == 0, proxy.output()
    assert "Traceback" not in proxy.output()


# -- a plain vhost that redirects everything to HTTPS --------------------------------------------------

def test_plain_vhost_redirects_to_https_keeping_path_and_query(front):
    p = front.ports
    r = front.curl(f"http://{NAME}:{p['p_http']}/shop/cart?item=42&q=a%20b")
    assert r.status_line == "HTTP/1.1 301 Moved Permanently"
    assert r.one("Location") == f"https://{NAME}:{p['p_tls']}/shop/cart?item=42&q=a%20b"
    assert r.one("Strict-Transport-Security") is None  # RFC 6797 7.2: never over plain HTTP


def test_redirect_is_followed_to_the_https_vhost_which_sends_hsts(front):
    p = front.ports
    r = front.curl(f"http://{NAME}:{p['p_http']}/a/b?c=1", "-L")
    assert r.hops == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK"]
    assert r.one("Strict-Transport-Security") == "max-age=600"
    seen = echo_lines(r.body)
    assert seen[""] == ["GET /a/b?c=1 HTTP/1.1"] and seen["x-forwarded-proto"] == ["https"]


def test_hsts_on_every_https_response_of_the_vhost(front):
    p = front.ports
    for path in ("/", "/bytes/10", "/chunked/10"):
        r = front.curl(f"https://{NAME}:{p['p_tls']}{path}")
        assert r.status == 200 and r.one("Strict-Transport-Security") == "max-age=600", path
    r = front.curl(f"https://{SHOP}:{p['p_shop_tls']}/")  # a TLS vhost without hsts_max_age_seconds
    assert r.status == 200 and r.one("Strict-Transport-Security") is None


def test_hsts_on_the_proxys_own_https_answers(front):
    """RFC 6797 7.1: an HSTS host SHOULD include the header in every response over secure
    transport, so also in the answers the proxy makes itself (redirects, 502, 400)."""
    p = front.ports
    r = front.curl(f"https://{NAME}:{p['p_tls']}/page:NOSSL")
    assert r.status == 301 and r.one("Location") == f"http://{NAME}:{p['p_http']}/page"
    assert r.one("Strict-Transport-Security") == "max-age=600"
    r = front.curl(f"https://{NAME}:{p['p_tls_dead']}/")
    assert r.status == 502 and r.one("Strict-Transport-Security") == "max-age=600"
    with RawTLSClient("127.0.0.1", p["p_tls"], front.pki.ca_cert, server_hostname=NAME) as c:
        bad = c.exchange(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    assert bad.status == 400 and bad.header("Strict-Transport-Security") == "max-age=600"


def test_configured_hsts_replaces_the_backends(front):
    """RFC 6797 8.1: a UA processes only the first STS field, so a backend's own (here
    max-age=0, "forget this host") appended before ours would silently win. The vhost's
    setting replaces it, as Apache's `Header always set` does."""
    r = front.curl(f"https://{NAME}:{front.ports['p_tls_sts']}/")
    assert r.status == 200 and r.body == b"ok\n"
    assert r.headers["strict-transport-security"] == ["max-age=600"]


# -- the FAQ's :SSL / :NOSSL suffixes --------------------------------------------------------------------

@pytest.mark.parametrize("scheme,port,target,location", [
    ("http", "p_shop_http", "/cart:SSL?x=1", "https://{shop}:{p_shop_tls}/cart?x=1"),
    ("https", "p_shop_tls", "/cart:NOSSL?x=1", "http://{shop}:{p_shop_http}/cart?x=1"),
    ("http", "p_shop_http", "/:SSL", "https://{shop}:{p_shop_tls}/"),
    ("https", "p_shop_tls", "/deep/page.html:SSL", "https://{shop}:{p_shop_tls}/deep/page.html"),
], ids=["ssl", "nossl", "root-ssl", "ssl-on-https"])
def test_ssl_nossl_suffix_redirects(front, scheme, port, target, location):
    p = front.ports
    r = front.curl(f"{scheme}://{SHOP}:{p[port]}{target}")
    assert r.status_line == "HTTP/1.1 301 Moved Permanently"
    assert r.one("Location") == location.format(shop=SHOP, **p)


def test_suffix_redirect_followed_and_plain_paths_proxied(front):
    p = front.ports
    r = front.curl(f"http://{SHOP}:{p['p_shop_http']}/cart:SSL?x=1", "-L")
    assert r.hops == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK"]
    assert echo_lines(r.body)[""] == ["GET /cart?x=1 HTTP/1.1"]
    r = front.curl(f"http://{SHOP}:{p['p_shop_http']}/page:SSLX")  # not a suffix: proxied as is
    assert r.status == 200 and echo_lines(r.body)[""] == ["GET /page:SSLX HTTP/1.1"]


# -- plain HTTP on a TLS port, by name ----------------------------------------------------------------------

def test_plain_http_on_tls_port_400_names_the_https_url_without_hsts(front):
    p = front.ports
    r = front.curl(f"http://{NAME}:{p['p_tls']}/x/y?z=1")
    assert r.status_line == "HTTP/1.1 400 Bad Request"
    url = f"https://{NAME}:{p['p_tls']}/x/y?z=1"
    assert f'<a href="{url}">' in r.body.decode()
    assert r.one("Strict-Transport-Security") is None and r.one("Connection") == "close"


def test_plain_http_on_tls_port_redirect_mode_followed(front):
    p = front.ports
    r = front.curl(f"http://{NAME}:{p['p_tls_r']}/x/y?z=1", "-L")
    assert r.hops == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK"]
    assert "Strict-Transport-Security: max-age=600" in r.verbose.replace("< ", "")
    assert echo_lines(r.body)[""] == ["GET /x/y?z=1 HTTP/1.1"]
    first = front.curl(f"http://{NAME}:{p['p_tls_r']}/x/y?z=1")
    assert first.one("Location") == f"https://{NAME}:{p['p_tls_r']}/x/y?z=1"
    assert first.one("Strict-Transport-Security") is None


# -- force-response-1.0 on the proxy's own answers ------------------------------------------------------------

def test_http10_redirect_kept_alive_says_so(front):
    """A 301 with an HTTP/1.0 status line (force-response-1.0) on a kept-alive connection must say
    `Connection: keep-alive` (RFC 9112 9.3); curl then reuses the connection for the next URL."""
    p = front.ports
    # curl asks for the last URL first; after an HTTP/1.0 answer it asks in HTTP/1.0 without
    # keep-alive, so the second answer rightly closes.
    r = front.curl(f"http://{NAME}:{p['p_http']}/second", "--interface", "127.0.0.2",
                   f"http://{NAME}:{p['p_http']}/first")
    assert r.hops == ["HTTP/1.0 301 Moved Permanently"] * 2
    first, second = r.hop_headers
    assert first["location"] == [f"https://{NAME}:{p['p_tls']}/first"]
    assert first.get("connection") == ["keep-alive"], first
    assert "Re-using existing connection" in r.verbose
    assert second.get("connection") == ["close"], second


def test_asterisk_form_redirects_to_the_root(front):
    """`OPTIONS *` (RFC 9112 3.2.4) has no path to keep: the Location must still be a URI."""
    p = front.ports
    r = front.curl(f"http://{NAME}:{p['p_http']}/", "-X", "OPTIONS", "--request-target", "*")
    assert r.status == 301 and r.one("Location") == f"https://{NAME}:{p['p_tls']}/"
    r = front.curl(f"http://{NAME}:{p['p_http']}/", "--request-target", f"http://{NAME}:{p['p_http']}/abs?q=1")
    assert r.one("Location") == f"https://{NAME}:{p['p_tls']}/abs?q=1"  # absolute-form: its path kept
