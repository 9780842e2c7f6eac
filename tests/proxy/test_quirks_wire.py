"""Issue 7 on the wire: per-request quirks and mod_ssl's three TLS shutdown modes.

A real `tlsfront serve` (one worker) in front of the demo backend, driven by
`rawtls.RawTLSClient` (Python ssl over a MemoryBIO on a real socket), which
records what a legacy browser would see: the status-line version, the
`Connection` and `Transfer-Encoding` headers, the body framing, whether the TCP
connection stayed open, and whether a TLS close_notify came before the FIN.

What the unit tests in test_frontend.py already prove (flags set on a fake
transport, the MSIE rule through StringTransport) is not repeated here; this
file proves the bytes and the connection ends, and the rule semantics (order,
set/unset, negation, case, Remote_Addr, Request_URI) through the access log.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from rawtls import RawTLSClient, Response

from helpers import TLSFRONT, Proc, free_ports, start_backend, start_proxy
from stack import ONE_WORKER_SERVER, TLS_DEFAULTS
from tlsfront.frontend import ACCURATE_SHUTDOWN_WAIT_SECONDS

MSIE_55 = "Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)"
MODERN = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
ALL_FOUR = ("nokeepalive", "downgrade-1.0", "force-response-1.0", "ssl-unclean-shutdown")  # quirks.NAMES order

CONFIG = ONE_WORKER_SERVER + TLS_DEFAULTS + """
[[quirk]]   # 0: Apache's default ssl.conf rule (BrowserMatch "MSIE [2-5]"), case-sensitive
attribute = "User-Agent"
pattern = "MSIE [2-5]"
set = ["nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0"]

[[quirk]]   # 1: a later rule undoes part of an earlier one (order, unset, ignore_case)
attribute = "User-Agent"
pattern = "reformed"
ignore_case = true
unset = ["nokeepalive", "ssl-unclean-shutdown"]

[[quirk]]   # 2: mod_ssl's accurate shutdown for clients that want it
attribute = "User-Agent"
pattern = "^Accurate/"
set = ["nokeepalive", "ssl-accurate-shutdown"]

[[quirk]]   # 3: Request_URI is the path without the query (SetEnvIf Request_URI)
attribute = "Request_URI"
pattern = "/legacy/"
set = ["downgrade-1.0"]

[[quirk]]   # 4: Remote_Addr, negated: every client but 127.0.0.1
attribute = "Remote_Addr"
pattern = "^127\\\\.0\\\\.0\\\\.1$"
negate = true
set = ["force-response-1.0"]

[[quirk]]   # 5: unclean shutdown without nokeepalive: the connection may idle before it closes
attribute = "User-Agent"
pattern = "^KeepUnclean/"
set = ["ssl-unclean-shutdown"]

[[quirk]]   # 6: no User-Agent at all: SetEnvIf matches a missing field as "" (mod_setenvif.c)
attribute = "User-Agent"
pattern = "^$"
set = ["nokeepalive"]

[timeouts]
client_keepalive_seconds = 1

[[vhost]]
listen = "127.0.0.1:{p_tls}"
server_name = "localhost"
tls = true
backends = ["http://127.0.0.1:{b1}"]
"""


@dataclass
class Front:
    dir: Path
    pki: object
    port: int

    def client(self, source_ip: str | None = None) -> RawTLSClient:
        return RawTLSClient("127.0.0.1", self.port, self.pki.ca_cert, source_ip=source_ip)

    def access_line(self, marker: str, timeout: float = 5.0) -> str:
        """The access-log line of the one request whose target contains `marker`."""
        deadline = time.monotonic() + timeout
        path = self.dir / "access.log"
        while True:
            lines = [x for x in (path.read_text() if path.exists() else "").splitlines() if marker in x]
            if lines or time.monotonic() > deadline:
                assert len(lines) == 1, f"{len(lines)} access-log lines contain {marker!r}"
                return lines[0]
            time.sleep(0.05)

    def quirks_logged(self, marker: str) -> tuple[str, ...]:
        """The last field of the access line: the quirk names applied, '-' for none."""
        last = self.access_line(marker).rsplit(" ", 1)[1]
        return () if last == "-" else tuple(last.split(","))


@pytest.fixture(scope="module")
def front(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("quirks")
    b1, p_tls = free_ports(2)
    backend = start_backend(d, b1, name="b1")
    cfg = d / "tlsfront.toml"
    cfg.write_text(CONFIG.format(d=d, pki=pki, b1=b1, p_tls=p_tls))
    proxy: Proc = start_proxy(d, cfg, [("127.0.0.1", p_tls)])
    yield Front(d, pki, p_tls)
    code = proxy.stop()
    backend.stop()
    assert code == 0, proxy.output()
    assert "Traceback" not in proxy.output()


def get(path: str, ua: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {ua}\r\n{extra}\r\n".encode("latin-1")


# -- a modern client vs MSIE 5.5 --------------------------------------------------------------------

def test_modern_client_keeps_alive_gets_chunked_and_close_notify(front):
    with front.client() as c:
        x = c.record(get("/chunked/3000/modern-1", MODERN))
        r = x.response
        assert (r.version, r.status, r.connection) == ("HTTP/1.1", 200, None)
        assert r.transfer_encoding == "chunked" and r.framing == "chunked"  # the backend streamed, no length
        assert r.body == b"x" * 3000
        assert x.stayed_open, "a modern client's connection is kept alive"
        x = c.record(get("/bytes/10/modern-2", MODERN))  # the same TCP connection, reused
        assert (x.version, x.response.framing, x.response.body) == ("HTTP/1.1", "length", b"x" * 10)
        assert x.stayed_open
        x = c.record(get("/bytes/5/modern-3", MODERN, "Connection: close\r\n"))
        assert x.connection == "close" and not x.stayed_open
        end = x.ending
    # mod_ssl's standard shutdown: close_notify, then the FIN without waiting for ours (we never sent it).
    assert end.close_notify_before_fin, end
    assert end.fin_at - end.close_notify_at < 1.0, end
    assert front.quirks_logged("/modern-1 ") == ()


@pytest.mark.parametrize("path,framing", [("/chunked/3000/msie", "close"), ("/bytes/3000/msie", "length")],
                         ids=["streamed-close-delimited", "with-length"])
def test_msie_55_gets_all_four_quirks(front, path, framing):
    with front.client() as c:
        # MSIE 5.5 sent HTTP/1.1 and asked for keep-alive: the quirks override both.
        x = c.record(get(path, MSIE_55, "Connection: Keep-Alive\r\n"))
    r, end = x.response, x.ending
    assert not x.stayed_open
    assert r.version == "HTTP/1.0" and r.status == 200  # force-response-1.0
    assert r.connection == "close"  # nokeepalive
    assert r.transfer_encoding is None and r.framing == framing  # downgrade-1.0: never chunked
    assert r.body == b"x" * 3000
    assert end.fin and not end.close_notify, end  # ssl-unclean-shutdown: FIN, no close_notify
    assert c.unclean_eof
    assert front.quirks_logged(path + " ") == ALL_FOUR


@pytest.mark.parametrize("ua,interim", [(MODERN, True), (MSIE_55, False)], ids=["modern", "msie"])
def test_no_100_continue_to_a_client_treated_as_http10(front, ua, interim):
    """RFC 9110 15.2: "A server MUST NOT send a 1xx response to an HTTP/1.0 client"; a
    downgrade-1.0 client is one (Apache: ap_send_interim_response skips proto_num < 1.1)."""
    with front.client() as c:
        c.send(f"POST /upload-{ua[:7]} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {ua}\r\n"
               "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n".encode())
        got_interim = not c.stays_open(wait=0.5)  # something arrived before we sent the body
        if got_interim:
            r = c.read_response(b"POST")
            assert (r.version, r.status) == ("HTTP/1.1", 100)
        c.send(b"hello")
        r = c.read_response(b"POST")
    assert got_interim == interim
    assert r.status == 200 and r.version == ("HTTP/1.1" if interim else "HTTP/1.0")
    assert b"body-bytes: 5" in r.body


# -- mod_ssl's accurate shutdown ------------------------------------------------------------------

def test_accurate_shutdown_waits_for_the_clients_close_notify(front):
    with front.client() as c:
        r = c.exchange(get("/bytes/10/accurate-answered", "Accurate/1.0"))
        assert (r.version, r.connection, r.framing) == ("HTTP/1.1", "close", "length")
        end = c.wait_closed(timeout=1.0)
        assert end.close_notify and not end.fin, f"the proxy must wait for our close_notify: {end}"
        sent_at = time.monotonic()
        c.send_close_notify()
        end = c.wait_closed(timeout=3.0)
    assert end.fin and end.close_notify_before_fin, end
    assert end.fin_at - sent_at < 1.0, f"FIN {end.fin_at - sent_at:.2f}s after our close_notify"
    assert front.quirks_logged("/accurate-answered ") == ("nokeepalive", "ssl-accurate-shutdown")


def test_accurate_shutdown_wait_is_bounded(front):
    """A client that never answers close_notify does not hold the connection for ever."""
    with front.client() as c:
        c.exchange(get("/bytes/10/accurate-silent", "Accurate/1.0"))
        end = c.wait_closed(timeout=ACCURATE_SHUTDOWN_WAIT_SECONDS + 3)
    assert end.close_notify and end.fin, end
    waited = end.fin_at - end.close_notify_at
    assert ACCURATE_SHUTDOWN_WAIT_SECONDS - 0.5 < waited < ACCURATE_SHUTDOWN_WAIT_SECONDS + 2, waited


@pytest.mark.parametrize("ua,close_notify", [(MODERN, True), ("KeepUnclean/1.0", False)],
                         ids=["standard", "unclean"])
def test_shutdown_mode_holds_for_the_keepalive_close(front, ua, close_notify):
    """mod_ssl sets the shutdown type on the *connection* when a request names one
    (ssl_engine_kernel.c, ssl_configure_env), so it also governs the close at the
    keep-alive timeout, after the request that asked for it is over."""
    with front.client() as c:
        r = c.exchange(get("/bytes/5/idle-" + ua.split("/")[0], ua))
        assert r.connection is None and c.stays_open()  # kept alive: no nokeepalive here
        end = c.wait_closed(timeout=4.0)  # client_keepalive_seconds = 1
    assert end.fin and end.close_notify == close_notify, end


# -- rule semantics, each proved by the access log and the bytes ------------------------------------

RULE_CASES = [
    # id, User-Agent, path (the marker is its last segment), source address, quirks expected
    ("modern", MODERN, "/chunked/100/r-modern", None, ()),
    ("msie-5.5", MSIE_55, "/chunked/100/r-msie", None, ALL_FOUR),
    ("msie-6-not-2-to-5", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", "/chunked/100/r-msie6",
     None, ()),
    ("case-sensitive-rule", MSIE_55.lower(), "/chunked/100/r-lower", None, ()),
    ("later-unset-ignore-case", MSIE_55 + " REFORMED", "/chunked/100/r-reformed", None,
     ("downgrade-1.0", "force-response-1.0")),
    ("earlier-unset-later-set", "Accurate/2.0 (reformed)", "/chunked/100/r-order", None,
     ("nokeepalive", "ssl-accurate-shutdown")),
    ("request-uri", MODERN, "/chunked/100/legacy/r-uri", None, ("downgrade-1.0",)),
    ("request-uri-not-query", MODERN, "/chunked/100/r-query?next=/legacy/", None, ()),
    ("remote-addr-negated", MODERN, "/chunked/100/r-addr2", "127.0.0.2", ("force-response-1.0",)),
]


@pytest.mark.parametrize("ua,path,source,expected", [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES])
def test_rules_in_order_on_the_wire(front, ua, path, source, expected):
    with front.client(source) as c:
        x = c.record(get(path, ua), answer_close_notify="ssl-accurate-shutdown" in expected)
    marker = path.split("?", 1)[0].rsplit("/", 1)[1]
    assert front.quirks_logged("/" + marker) == expected
    check_response_matches_quirks(x.response, x.stayed_open, x.ending, expected)


def test_missing_header_matches_as_empty_string(front):
    """mod_setenvif: "A NULL value indicates that the header field ... wasn't present ...
    Represent that as an empty string so that REs like "^$" will work"."""
    with front.client() as c:
        r = c.exchange(b"GET /bytes/4/no-ua HTTP/1.1\r\nHost: localhost\r\n\r\n")
        end = c.wait_closed()
    assert r.connection == "close" and end.fin and end.close_notify_before_fin
    assert front.quirks_logged("/no-ua ") == ("nokeepalive",)


def check_response_matches_quirks(r: Response, kept: bool, end, quirks: tuple[str, ...]) -> None:
    """What each quirk means on the wire (issue 7), for a backend that streams without a length."""
    assert r.version == ("HTTP/1.0" if "force-response-1.0" in quirks else "HTTP/1.1")
    http10_framing = "downgrade-1.0" in quirks or r.version == "HTTP/1.0"
    # RFC 9112 6.1: chunked only for HTTP/1.1; an HTTP/1.0 message is delimited by length or close.
    assert r.framing == ("close" if http10_framing else "chunked"), (r.version, r.headers)
    assert r.body == b"x" * 100
    assert kept == (not http10_framing and "nokeepalive" not in quirks)
    if not kept:
        assert r.connection == "close"
        assert end.fin
        assert end.close_notify == ("ssl-unclean-shutdown" not in quirks), end


def test_http10_response_kept_alive_says_so(front):
    """force-response-1.0 without nokeepalive: an HTTP/1.0 response is persistent only with
    `Connection: keep-alive` (RFC 9112 9.3), so a connection kept open must say it."""
    with front.client("127.0.0.2") as c:  # rule 4: force-response-1.0
        r = c.exchange(get("/bytes/7/ka10", MODERN))
        kept = c.stays_open()
        if kept:
            r2 = c.exchange(get("/bytes/3/ka10-2", MODERN))
            assert r2.version == "HTTP/1.0" and r2.body == b"xxx"
    assert r.version == "HTTP/1.0" and r.framing == "length"
    assert kept == (r.connection or "").lower().startswith("keep-alive"), (kept, r.headers)
    assert kept, "a response with a length can stay alive"


# -- config errors at check time ---------------------------------------------------------------------

def test_check_refuses_bad_regex_and_unknown_quirk_name(pki, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"""
[tls]
certificate = "{pki.server_cert}"
key = "{pki.server_key}"

[[quirk]]
attribute = "User-Agent"
pattern = "MSIE [2-5"
set = ["nokeepalive"]

[[quirk]]
attribute = "Request_URI"
pattern = "^/old/"
set = ["ssl-unclean-shutdwn", "keepalive"]

[[vhost]]
listen = "127.0.0.1:8443"
tls = true
backends = ["http://127.0.0.1:8081"]
""")
    done = subprocess.run([TLSFRONT, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout
    err = done.stderr
    assert "Traceback" not in err
    assert "3 problems in the configuration" in err
    assert re.search(r"quirk\[0\]\.pattern \(line 8\): 'MSIE \[2-5' is not a regular expression", err), err
    assert re.search(r"quirk\[1\]\.set\[0\].*unknown quirk 'ssl-unclean-shutdwn' "
                     r"\(did you mean 'ssl-unclean-shutdown'\?\)", err), err
    assert "unknown quirk 'keepalive'" in err and "use nokeepalive, downgrade-1.0" in err
    assert str(cfg) in err


# -- docs/quirks.md says what the code does --------------------------------------------------------------

def test_docs_quirk_example_loads_and_behaves_as_described(pki, tmp_path):
    """The `[[quirk]]` example of docs/quirks.md passes the loader, and its prose holds."""
    from tlsfront import config
    from tlsfront.quirks import QuirkRules

    doc = (Path(__file__).parents[2] / "docs" / "quirks.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    example = next(b for b in blocks if "[[quirk]]" in b)
    cfg = tmp_path / "doc.toml"
    cfg.write_text(f'[tls]\ncertificate = "{pki.server_cert}"\nkey = "{pki.server_key}"\n'
                   + example + '[[vhost]]\nlisten = "127.0.0.1:8443"\ntls = true\n'
                   'backends = ["http://127.0.0.1:8081"]\n')
    rules = QuirkRules(config.load(cfg).quirks)
    h = [(b"User-Agent", (MSIE_55 + " REFORMED").encode())]
    assert rules.for_request(h, "10.1.2.3", b"/").names == ("downgrade-1.0", "force-response-1.0")
    assert rules.for_request(h, "192.0.2.1", b"/").names == ("downgrade-1.0", "force-response-1.0",
                                                            "ssl-accurate-shutdown")
    assert rules.for_request([(b"User-Agent", MSIE_55.encode())], "10.0.0.7", b"/").names == ALL_FOUR


@pytest.mark.parametrize("conf", ["demo.toml", "tlsfront.toml"])
def test_shipped_configs_carry_the_classic_rule_for_msie_2_to_5(conf):
    """Issue 7: like Apache's httpd-ssl.conf (BrowserMatch "MSIE [2-5]"): MSIE 2-5 get the
    four quirks; MSIE 6 and later keep HTTP/1.1, keep-alive and a clean TLS shutdown."""
    import tomllib

    from tlsfront.model import Quirk
    from tlsfront.quirks import QuirkRules

    data = tomllib.loads((Path(__file__).parents[2] / "conf" / conf).read_text())
    rules = QuirkRules([Quirk(attribute=q["attribute"], pattern=q["pattern"],
                              ignore_case=q.get("ignore_case", False), negate=q.get("negate", False),
                              set=tuple(q.get("set", ())), unset=tuple(q.get("unset", ())))
                        for q in data["quirk"]])

    def names(ua: str) -> tuple[str, ...]:
        return rules.for_request([(b"User-Agent", ua.encode())], "192.0.2.1", b"/").names

    for ua in (MSIE_55, "Mozilla/2.0 (compatible; MSIE 3.02; Windows 95)",
               "Mozilla/4.0 (compatible; MSIE 4.01; Windows NT)", "Mozilla/4.0 (compatible; MSIE 5.01; Windows NT 5.0)"):
        assert names(ua) == ALL_FOUR, ua
    for ua in ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)",
               "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0)", MODERN):
        assert names(ua) == (), ua
