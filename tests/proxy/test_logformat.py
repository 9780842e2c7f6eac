"""logformat: exact Apache-compatible lines, the documented grammar, escaping, the ID table."""

from __future__ import annotations

import calendar
import os
import re
import string
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsfront import logformat
from tlsfront.logformat import MESSAGES, ErrorLogFormatter, access_line, escape, ssl_request_line

DOCS = Path(__file__).resolve().parents[2] / "docs" / "logs.md"


@pytest.fixture
def tz():
    """Pin the process time zone (log times are local, as Apache's)."""
    saved = os.environ.get("TZ")

    def set_tz(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()
        logformat.reset_time_cache()

    set_tz("UTC")
    yield set_tz
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()
    logformat.reset_time_cache()


def _utc(y, mo, d, h, mi, s, usec=0) -> float:
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + usec / 1e6


WHEN = _utc(2026, 11, 27, 9, 2, 59, 123456)


def _doc_regexes() -> dict[str, re.Pattern[str]]:
    """The three grammars documented in docs/logs.md, in order: error, access, ssl_request."""
    blocks = re.findall(r"```\n(\^.*?\$)\n```", DOCS.read_text(), flags=re.S)
    assert len(blocks) == 3, "docs/logs.md should hold 3 regex blocks"
    return dict(zip(("error", "access", "ssl_request"), (re.compile(b) for b in blocks)))


GRAMMAR = _doc_regexes()


def test_error_line_exact(tz) -> None:
    f = ErrorLogFormatter(pid=1234)
    line = f.format("handshake_failed", WHEN, ("10.0.0.1", 50000), vhost="www.example.test:443",
                    reason="no_shared_cipher", alert="-", openssl="SSL routines::no shared cipher")
    assert line == (
        "[Fri Nov 27 09:02:59.123456 2026] [ssl:info] [pid 1234] [client 10.0.0.1:50000] TLSF0201: "
        "SSL handshake failed (server www.example.test:443): reason=no_shared_cipher alert=- "
        "SSL Library Error: SSL routines::no shared cipher\n")
    m = GRAMMAR["error"].match(line.rstrip("\n"))
    assert m and m["id"] == "TLSF0201" and m["client"] == "10.0.0.1" and m["port"] == "50000"


def test_error_line_without_client_and_ipv6(tz) -> None:
    f = ErrorLogFormatter(pid=7)
    assert f.format("shutdown_done", _utc(2026, 11, 3, 0, 0, 1)) == (
        "[Tue Nov 03 00:00:01.000000 2026] [core:notice] [pid 7] TLSF0004: shutdown complete\n")
    line = f.format("bad_request", WHEN, ("::1", 4431), vhost="a:80", problem="x", status=400)
    assert "[client ::1:4431] TLSF0402" in line
    m = GRAMMAR["error"].match(line.rstrip("\n"))
    assert m and m["client"] == "::1" and m["port"] == "4431"


def test_time_cache_follows_the_clock(tz) -> None:
    f = ErrorLogFormatter(pid=1)
    a = f.format("shutdown_done", WHEN)
    b = f.format("shutdown_done", WHEN + 0.5)
    c = f.format("shutdown_done", WHEN + 1.0)
    assert "09:02:59.123456" in a and "09:02:59.623456" in b and "09:03:00.123456" in c
    assert logformat.clf_time(WHEN) == "[27/Nov/2026:09:02:59 +0000]"
    assert logformat.clf_time(_utc(2027, 1, 1, 0, 0, 0)) == "[01/Jan/2027:00:00:00 +0000]"


def test_local_time_and_offset(tz) -> None:
    tz("EST5")
    assert logformat.clf_time(WHEN) == "[27/Nov/2026:04:02:59 -0500]"
    assert logformat.error_time(WHEN) == "[Fri Nov 27 04:02:59.123456 2026]"
    tz("IST-5:30")
    assert logformat.clf_time(WHEN) == "[27/Nov/2026:14:32:59 +0530]"


def test_access_line_exact(tz) -> None:
    line = access_line("www.example.test:443", "10.0.0.1", WHEN, "GET / HTTP/1.1", 200, 512, None,
                       "curl/8.5.0")
    assert line == ('www.example.test:443 10.0.0.1 - - [27/Nov/2026:09:02:59 +0000] "GET / HTTP/1.1" '
                    '200 512 "-" "curl/8.5.0" -\n')
    line = access_line("a:443", "::1", WHEN, 'GET /"q" HTTP/1.0', 502, 0, "http://r/", "UA\x01",
                       ("nokeepalive", "downgrade-1.0"))
    assert line.endswith('"GET /\\"q\\" HTTP/1.0" 502 0 "http://r/" "UA\\x01" nokeepalive,downgrade-1.0\n')
    m = GRAMMAR["access"].match(line.rstrip("\n"))
    assert m and m["status"] == "502" and m["quirks"] == "nokeepalive,downgrade-1.0"


def test_ssl_request_line_exact(tz) -> None:
    line = ssl_request_line(WHEN, "10.0.0.1", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "GET / HTTP/1.1",
                            512, 0.0012346, False, "www.example.test:443")
    assert line == ('[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.3 TLS_AES_128_GCM_SHA256 "GET / HTTP/1.1" 512 '
                    '0.001235 new www.example.test:443\n')
    m = GRAMMAR["ssl_request"].match(line.rstrip("\n"))
    assert m and m["vhost"] == "www.example.test:443" and m["session"] == "new" and m["bytes"] == "512"
    # no vhost known: "-", so the line keeps its field count
    line = ssl_request_line(WHEN, "10.0.0.1", None, None, "GET / HTTP/1.1", 0, 0.0, True)
    assert line.endswith('- - "GET / HTTP/1.1" - 0.000000 reused -\n')
    m = GRAMMAR["ssl_request"].match(line.rstrip("\n"))
    assert m and m["vhost"] == "-" and m["session"] == "reused"


def test_ssl_request_line_keeps_mod_ssl_fields_first(tz) -> None:
    """mod_ssl's six fields (%t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x "%r" %b) come first, unchanged, so a
    parser of mod_ssl's format reads them; the grammar still reads a line written before the vhost field."""
    mod_ssl = re.compile(r'^\[(?P<time>[^\]]+)\] (?P<client>\S+) (?P<protocol>\S+) (?P<cipher>\S+) '
                         r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<bytes>\d+|-)(?: |$)')
    line = ssl_request_line(WHEN, "::1", "TLSv1", "ECDHE-RSA-AES128-SHA", 'GET /"x" HTTP/1.0', 7, 0.5, False,
                            "legacy.test:8443")
    m = mod_ssl.match(line)
    assert m and (m["client"], m["protocol"], m["cipher"], m["request"], m["bytes"]) == (
        "::1", "TLSv1", "ECDHE-RSA-AES128-SHA", 'GET /\\"x\\" HTTP/1.0', "7")
    old = '[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.2 AES128-SHA "GET / HTTP/1.1" - 0.000311 reused'
    m = GRAMMAR["ssl_request"].match(old)
    assert m and m["vhost"] is None and m["session"] == "reused"


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_formats_and_parses(tz, key: str) -> None:
    msg = MESSAGES[key]
    fields = {name: f"v-{name}" for name in _fields(msg.template)}
    line = ErrorLogFormatter(pid=99).format(key, WHEN, ("127.0.0.1", 1), **fields)
    m = GRAMMAR["error"].match(line.rstrip("\n"))
    assert m, line
    assert (m["id"], m["module"], m["level"]) == (msg.id, msg.module, msg.level)
    for value in fields.values():
        assert value in m["message"]
    with pytest.raises(KeyError):
        if fields:
            ErrorLogFormatter(pid=99).format(key, WHEN)
        else:
            raise KeyError("no fields")


def test_ids_are_unique_and_stable() -> None:
    ids = [m.id for m in MESSAGES.values()]
    assert len(ids) == len(set(ids))
    # The analyzer keys on these; renumbering them is a breaking change.
    assert MESSAGES["handshake_failed"].id == "TLSF0201"
    assert MESSAGES["plain_http"].id == "TLSF0204"
    assert MESSAGES["backend_refused"].id == "TLSF0301"
    assert MESSAGES["backend_timeout"].id == "TLSF0303"
    with pytest.raises(ValueError):
        logformat.Message("TLS1", "info", "ssl", "x")
    with pytest.raises(ValueError):
        logformat.Message("TLSF0999", "loud", "ssl", "x")


def test_docs_table_matches_code() -> None:
    rows = re.findall(r"^\| (TLSF\d{4}) \| (\w+):(\w+) \| `(\w+)` \| `(.*)` \|$", DOCS.read_text(), flags=re.M)
    documented = {key: (mid, module, level, template) for mid, module, level, key, template in rows}
    actual = {key: (m.id, m.module, m.level, m.template) for key, m in MESSAGES.items()}
    assert documented == actual


@pytest.mark.parametrize("raw, escaped", [
    ("plain text", "plain text"),
    ('a"b', 'a\\"b'),
    ("a\\b", "a\\\\b"),
    ("line\nbreak\r\t", "line\\nbreak\\r\\t"),
    ("\x00\x1b\x7f", "\\x00\\x1b\\x7f"),
    ("caf\u00e9", "caf\\xe9"),
    ("\u20ac", "\\xe2\\x82\\xac"),
])
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def _unescape(text: str) -> str:
    specials = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "v": "\v", '"': '"', "\\": "\\"}
    return re.sub(r'\\(x[0-9a-f]{2}|[nrtbv"\\])',
                  lambda m: chr(int(m[1][1:], 16)) if m[1][0] == "x" else specials[m[1]], text)


@settings(max_examples=300, deadline=None)
@given(request=st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=80),
       ua=st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=40))
def test_peer_text_cannot_break_lines(request: str, ua: str) -> None:
    line = access_line("v:443", "127.0.0.1", WHEN, request, 200, 1, None, ua or None)
    assert line.count("\n") == 1 and line.endswith("\n") and line.isascii()
    m = GRAMMAR["access"].match(line[:-1])
    assert m is not None
    assert _unescape(m["request"]) == request
    err = ErrorLogFormatter(pid=1).format("plain_http", WHEN, ("127.0.0.1", 2), vhost="v:443",
                                          request_line=request)
    assert err.count("\n") == 1 and err.isascii() and GRAMMAR["error"].match(err[:-1])


def test_pid_follows_fork() -> None:
    f = ErrorLogFormatter()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the pid field it formats, then leave without cleanup
        os.write(w, f.format("shutdown_done", WHEN).encode())
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    line = os.read(r, 4096).decode()
    os.close(r)
    assert f"[pid {pid}]" in line
    assert f"[pid {os.getpid()}]" in f.format("shutdown_done", WHEN)
