"""The Apache 2.4 block scanner (``APACHE_ERROR.scan_block``: ``apache_units.scan_units``, the hot path of
``tlslog scan``) must give exactly what the generic candidate loop gives (candidate regexes, ``decode_apache`` per
line, the joiner): the same events, times, examples, line counts and the same open joiner state (what ``--jobs`` ranges and ``follow`` carry on).

Lines are generated from the pieces that decide the fast path's branches: message IDs with and without a
timeout rule, errno texts that say "timeout", ``SSL Library Error`` continuation lines with or without an open group
for their key, lines carrying a second candidate, missing pid fields, stamps without a fraction, junk."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from scan_outcome import outcome
from tlslog import decoders, synth

FAST = decoders.APACHE_ERROR
GENERIC = dataclasses.replace(FAST, scan_block=None, count_lines=None)

STAMPS = ("[Fri Nov 27 10:50:{s:02d}.123456 2026] ", "[Fri Nov 27 10:50:{s:02d} 2026] ",
          "[Fri Nov 27 10:50:{s:02d}.5 2026] ", "[Xyz Nov 99 10:50:{s:02d}.1 2026] ")
MODULES = ("[ssl:info] ", "[proxy:error] ", "[core:error] ", "[ssl:warn] ")
PIDS = ("[pid 1:tid 2] ", "[pid 1:tid 3] ", "[pid 7] ", "", "[pid 1:tid 2 ")
ERRNOS = ("", "(104)Connection reset by peer: ", "(70007)The timeout specified has expired: ", "(1)x ] SSL Library Error: ",
          "(110)Connection timed out: ", "(111)Connection refused: ", "(11)Resource TIMEOUT: ")
CLIENTS = ("", "[client 198.51.100.7:5] ", "[remote 10.0.0.1:80] ")
MESSAGES = (
    "AH02008: SSL library error 1 in handshake (server www.example.com:443)",
    "AH02008: SSL library error 1 in handshake (server broken",
    "AH02007: SSL handshake interrupted by system [Hint: Stop button pressed in browser?!]",
    "AH02007: SSL handshake interrupted by system: timed out",
    "AH02006: SSL handshake stopped: connection was closed",
    "AH01996: SSL handshake failed: HTTP spoken on HTTPS port; trying to send HTML error page",
    "AH02039: Certificate Verification: Error (20): unable to get local issuer certificate",
    "AH01382: Request handshake read timeout",
    "AH01382: Request header read timeout",
    "AH00957: HTTP: attempt to connect to 127.0.0.1:8080 (127.0.0.1:8080) failed",
    "AH01114: HTTP: failed to make connection to backend: 127.0.0.1",
    "AH00959: ap_proxy_connect_backend disabling worker for (127.0.0.1) for 60s",
    "AH00940: HTTP: disabled connection for (127.0.0.1)",
    "AH01102: error reading status line from remote server 127.0.0.1:8080",
    "AH01991: SSL input filter read failed.",
    "AH01992: SSL library error 1 reading data",
    "AH02026: Failed to acquire SSL session cache lock",
    "AH02565: Certificate and private key www.example.com:443:0 from /a.crt and /a.key do not match",
    "AH01964: Connection to child 1 established (server www.example.com:443)",
    "SSL Library Error: error:0A000412:SSL routines::sslv3 alert bad certificate (SSL alert number 42)",
    "SSL Library Error: error:0A0000C1:SSL routines::no shared cipher",
    "SSL Library Error: error:0A000126:SSL routines::unexpected eof while reading",
    "SSL Library Error: something new",
    "AH02008: x ] SSL Library Error: error:0A0000C1:SSL routines::no shared cipher",
    "AH00128: File does not exist: /var/www/AH02008: x",
)
BARE = ("AH00016: Configuration Failed", "junk SSL Library Error: no shared cipher", "AH02008: bare",
        "[Fri Nov 27 10:50:52 2026] [ssl:info] [pid 1:tid 2] SSL Library Error without its colon",
        "[ssl:info] AH02008: no time", "", "[", "AH00016: ", "AH0001: x", " [x")

line = st.one_of(
    st.builds(lambda stamp, s, mod, pid, errno, client, msg, tail: (
        stamp.format(s=s) + mod + pid + errno + client + msg + tail),
        st.sampled_from(STAMPS), st.integers(0, 59), st.sampled_from(MODULES), st.sampled_from(PIDS),
        st.sampled_from(ERRNOS), st.sampled_from(CLIENTS), st.sampled_from(MESSAGES),
        st.sampled_from(("", " timed out", " (server other:443)", " ] SSL Library Error: x", " ] SSL Library Error x",
                         " SSL Library Error: x"))),
    st.sampled_from(BARE),
)





def _same(data: bytes, block_size: int) -> None:
    fast, generic = outcome(FAST, data, block_size), outcome(GENERIC, data, block_size)
    assert fast == generic


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(line, max_size=40), block_size=st.sampled_from((64, 300, 1 << 20)),
       final_newline=st.booleans())
def test_fast_path_equals_generic_loop(lines, block_size, final_newline):
    data = "\n".join(lines).encode()
    if final_newline and data:
        data += b"\n"
    _same(data, block_size)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(line, max_size=30), cut=st.integers(0, 2000))
def test_one_pass_line_count_equals_count_plus_understood(lines, cut):
    """``_apache_lines`` (one findall) == ``bytes.count`` + ``_count_apache_understood`` on any newline-ended
    slice of a block, also one starting mid-block."""
    data = ("\n".join(lines) + "\n").encode()
    start = data.find(b"\n", 0, min(cut, len(data))) + 1 if cut else 0
    if start >= len(data):
        return
    n = data.count(b"\n", start)
    assert decoders._apache_lines(data, start, len(data)) == (
        n, decoders._count_apache_understood(data, start, len(data), n))


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(line, max_size=30))
def test_one_candidate_pass_finds_every_id_and_library_error(lines):
    """``_AP_CANDIDATES`` (one pass: ": " and a look back) hits exactly where the two literal-prefixed passes it
    replaced hit: each candidate message ID (``AH02008: ``) and each ``SSL Library Error: ``."""
    import re

    data = ("\n".join(lines) + "\n").encode()
    ids = re.compile(("AH" + decoders._trie(list(decoders.AH_CANDIDATE_IDS)) + ": ").encode())
    expected = sorted([m.end() - 2 for m in ids.finditer(data)]
                      + [m.end() - 2 for m in re.finditer(rb"SSL Library Error: ", data)])
    assert [m.start() for m in decoders._AP_CANDIDATES.finditer(data)] == expected


def test_fast_path_equals_generic_loop_on_the_synthetic_log(tmp_path):
    path = tmp_path / "error_log"
    synth.write(str(path), 20_000, tls_fraction=0.3, seed=3)
    data = path.read_bytes()
    _same(data, 1 << 16)
    fast = outcome(FAST, data, 1 << 16)
    assert sum(fast[2].values()) > 1000  # the comparison above compared real events


# --------------------------------------------------------------------------- the read-ahead thread (sources.prefetched)

def test_prefetched_yields_every_chunk_in_order_and_joins_its_thread():
    import threading

    from tlslog.sources import prefetched

    chunks = [bytes([i]) * (i + 1) for i in range(50)]
    assert list(prefetched(iter(chunks), depth=2)) == chunks
    assert not [t for t in threading.enumerate() if t.name == "tlslog-prefetch"]


def test_prefetched_stops_its_producer_when_the_consumer_stops_early():
    import threading

    from tlslog.sources import prefetched

    closed = threading.Event()

    def endless():
        try:
            while True:
                yield b"x" * 10
        finally:
            closed.set()

    it = prefetched(endless(), depth=2)
    assert next(it) == b"x" * 10
    it.close()  # what happens when a scan ends inside a file (an exception in the loop)
    assert closed.wait(5) and not [t for t in threading.enumerate() if t.name == "tlslog-prefetch"]


def test_prefetched_hands_a_producer_exception_to_the_consumer():
    import pytest
    from tlslog.sources import prefetched

    def broken():
        yield b"a"
        raise OSError("disk on fire")

    it = prefetched(broken())
    assert next(it) == b"a"
    with pytest.raises(OSError, match="disk on fire"):
        next(it)


def test_gz_scan_with_read_ahead_equals_plain_scan(tmp_path):
    import gzip

    from tlslog.scan import ScanOptions, scan

    plain = tmp_path / "error_log"
    truth = synth.write(str(plain), 30_000, tls_fraction=0.1, seed=11)
    gz = tmp_path / "error_log.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes(), 1))
    a, b = scan(ScanOptions([str(plain)], tz="UTC")).store, scan(ScanOptions([str(gz)], tz="UTC")).store
    assert {k: v for k, v in b.category_totals().items() if v} == dict(truth)
    assert (a.events, a.first, a.last, a.total_lines) == (b.events, b.first, b.last, b.total_lines)
    assert [e[1] for e in a.examples.values()] == [e[1] for e in b.examples.values()]


def test_a_bug_in_the_block_scanner_is_a_warning_not_a_traceback(monkeypatch):
    """The generic loop reports a decoder exception once per file and goes on; the block scanner's own code gets
    the same treatment (the rest of that block is lost, the next blocks are read)."""
    calls = []

    def broken(block, start, end, *rest):
        calls.append(start)
        if len(calls) == 1:
            raise KeyError("boom")
        return FAST.scan_block(block, start, end, *rest)

    fmt = dataclasses.replace(FAST, scan_block=broken)
    line = b"[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] [client 1.2.3.4:5] AH01996: SSL handshake failed: HTTP spoken on HTTPS port; x\n"
    result = outcome(fmt, [line] * 10, 100)  # one block per line
    warnings = result[-1]
    assert len(calls) > 2 and len(warnings) == 1 and "internal error" in warnings[0] and "KeyError" in warnings[0]
    assert 0 < result[8] < 10  # events: the first block's lines were lost, the later blocks' counted
