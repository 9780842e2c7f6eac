"""The block-level fast path of Apache 2.4 error logs (tlslog.apache_units) gives exactly what the generic loop gives
(candidate regex, ``decode_apache`` per line, the joiner), and hands every line it does not take to that loop.

The generator writes *connections*, as mod_ssl and mod_proxy log them, on a few keys: a head line (a simple ID, an
ID whose rule needs the text, a merging pair such as AH02039 then AH02008 or AH00957 then AH01114) followed by 0-3
``SSL Library Error:`` lines that are adjacent or not, of the same key or of another (interleaved threads), with
stamps that jump beyond the joining window, plus ordinary lines and odd ones (no pid, a second hit in the line,
``] SSL Library Error`` inside the head, broken stamps). Blocks of 64 bytes to 1 MiB cut groups anywhere, so units
are pending across blocks and the block prefix of every key is exercised.
"""

from __future__ import annotations

import dataclasses
import re

import line_loop
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scan_outcome import outcome
from tlslog import _units, apache_units, decoders, synth

FAST = decoders.APACHE_ERROR
LOOP = dataclasses.replace(FAST, scan_block=line_loop.scan_apache24, flush=None)  # the line loop before the units
GENERIC = dataclasses.replace(FAST, scan_block=None, count_lines=None, flush=None)

KEYS = ("1:tid 2", "1:tid 3", "2:tid 2")
HEADS = (  # (message, may have library-error lines)
    "AH02008: SSL library error 1 in handshake (server www.example.com:443)",
    "AH02008: SSL library error 1 in handshake (server shop.example.com:443)",
    "AH01996: SSL handshake failed: HTTP spoken on HTTPS port; trying to send HTML error page",
    "AH02007: SSL handshake interrupted by system [Hint: Stop button pressed in browser?!]",
    "AH02006: SSL handshake stopped: connection was closed",
    "AH02039: Certificate Verification: Error (20): unable to get local issuer certificate",
    "AH01382: Request handshake read timeout",
    "AH00957: HTTP: attempt to connect to 127.0.0.1:8080 (127.0.0.1:8080) failed",
    "AH01114: HTTP: failed to make connection to backend: 127.0.0.1",
    "AH01102: error reading status line from remote server 127.0.0.1:8080",
    "AH01991: SSL input filter read failed.",
    "AH01992: SSL library error 1 reading data",
    "AH00940: HTTP: disabled connection for (127.0.0.1)",
    "AH02026: Failed to acquire SSL session cache lock",
    "AH00959: ap_proxy_connect_backend disabling worker for (127.0.0.1) for 60s",
    "AH02261: Re-negotiation handshake failed",
    "AH02565: Certificate and private key www.example.com:443:0 from /a.crt and /a.key do not match",
)
REASONS = (
    "error:0A000412:SSL routines::sslv3 alert bad certificate (SSL alert number 42)",
    "error:0A0000C1:SSL routines::no shared cipher",
    "error:0A000126:SSL routines::unexpected eof while reading",
    "error:14094418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca (SSL alert number 48)",
    "something new",
    "",
)
ERRNOS = ("", "", "(104)Connection reset by peer: ", "(70007)The timeout specified has expired: ",
          "(111)Connection refused: ", "(1)x ] SSL Library Error: ")
CLIENTS = ("[client 198.51.100.7:5] ", "", "[remote 10.0.0.1:80] ")
ODD = ("[Fri Nov 27 10:50:52 2026] [core:info] [pid 1:tid 2] AH00128: File does not exist: /x/AH02008: y",
       "[Fri Nov 27 10:50:52.5 2026] [ssl:info] AH02008: SSL library error 1 in handshake (no pid)",
       "[Fri Nov 27 10:50:52.1 2026] [ssl:info] [pid 1:tid 2] [client 1.2.3.4:5] AH02008: x ] SSL Library Error: y",
       "[Xyz Nov 99 10:50:52.1 2026] [ssl:info] [pid 1:tid 2] [client 1.2.3.4:5] AH02008: bad stamp",
       "[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] SSL Library Error without its colon",
       "[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid ] SSL Library Error: error:0A0000C1:SSL routines::no "
       "shared cipher",
       "[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] [x] SSL Library Error: no shared cipher",
       "AH00016: Configuration Failed", "junk", "")
NORMAL = ("[Fri Nov 27 10:50:{s:02d}.{us:06d} 2026] [ssl:info] [pid {k}] [client 1.2.3.4:5] AH01964: Connection to "
          "child 1 established")


def _stamp(sec: int, us: int | None) -> str:
    m, s = divmod(sec, 60)
    frac = "" if us is None else f".{us:06d}"
    return f"[Fri Nov 27 10:{m % 60:02d}:{s:02d}{frac} 2026] "


@st.composite
def connection(draw) -> list[tuple[int, str]]:
    """A connection's lines as (order, text): a head and its library-error lines, some of them out of place."""
    sec = draw(st.integers(0, 600))
    us = draw(st.one_of(st.none(), st.integers(0, 999999)))
    key = draw(st.sampled_from(KEYS))
    stamp = _stamp(sec, us)
    head = (stamp + draw(st.sampled_from(("[ssl:info] ", "[proxy:error] "))) + f"[pid {key}] "
            + draw(st.sampled_from(ERRNOS)) + draw(st.sampled_from(CLIENTS)) + draw(st.sampled_from(HEADS))
            + draw(st.sampled_from(("", "", " timed out", " (server other:443)"))))
    lines = [(0, head)]
    for i in range(draw(st.integers(0, 3))):
        k = draw(st.sampled_from((key, key, key, draw(st.sampled_from(KEYS)))))  # mostly the head's key
        cont_stamp = stamp if draw(st.booleans()) else _stamp(sec + draw(st.integers(0, 9)), us)
        lines.append((draw(st.sampled_from((0, 0, 0, 1, 2))),  # 0: right after the head, else later
                      cont_stamp + f"[ssl:info] [pid {k}] SSL Library Error: " + draw(st.sampled_from(REASONS))))
    return lines


@st.composite
def log(draw) -> bytes:
    """Connections, ordinary lines and odd lines, with some library-error lines moved after later lines."""
    out: list[str] = []
    late: list[tuple[int, str]] = []
    for _ in range(draw(st.integers(0, 40))):
        what = draw(st.integers(0, 9))
        if what < 6:
            conn = draw(connection())
            out.extend(text for order, text in conn if order == 0)
            late.extend((order, text) for order, text in conn if order)
        elif what < 8:
            out.append(NORMAL.format(s=draw(st.integers(0, 59)), us=draw(st.integers(0, 999999)),
                                     k=draw(st.sampled_from(KEYS))))
        else:
            out.append(draw(st.sampled_from(ODD)))
        ready = [t for o, t in late if o == 1]
        late = [(o - 1, t) for o, t in late if o != 1]
        out.extend(ready)
    out.extend(t for _, t in late)
    data = "\n".join(out).encode()
    return data + b"\n" if data and draw(st.booleans()) else data


LEXERS = {"python": apache_units._py_hits, "c": _units.hits}


def _run(fmt, data: bytes | list[bytes], block_size: int, lexer: str = "c"):
    before, apache_units.lex = apache_units.lex, LEXERS[lexer]
    try:
        return outcome(fmt, data, block_size)
    finally:
        apache_units.lex = before


@settings(max_examples=400, deadline=None)
@given(data=log(), block_size=st.sampled_from((64, 300, 2000, 1 << 20)))
def test_units_equal_the_generic_loop(data, block_size):
    generic = _run(GENERIC, data, block_size)
    assert _run(FAST, data, block_size, "c") == generic
    assert _run(FAST, data, block_size, "python") == generic
    assert _run(LOOP, data, block_size) == generic


@settings(max_examples=100, deadline=None)
@given(data=log(), cuts=st.lists(st.integers(0, 4000), max_size=4))
def test_units_equal_the_generic_loop_across_chunk_boundaries(data, cuts):
    """Chunks cut anywhere (mid-line): pending groups cross blocks and chunks."""
    pieces, last = [], 0
    for c in sorted(set(min(c, len(data)) for c in cuts)):
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    generic = _run(GENERIC, data, 300)
    assert _run(FAST, pieces, 300, "c") == generic
    assert _run(FAST, pieces, 300, "python") == generic


@pytest.mark.parametrize("lexer", sorted(LEXERS))
def test_units_on_the_synthetic_log_take_nearly_every_line_and_equal_the_generic_loop(tmp_path, monkeypatch, lexer):
    """On mod_ssl's usual output the fast path takes the units itself: the exact path sees only each key's first
    two heads, whatever the number of blocks."""
    path = tmp_path / "error_log"
    synth.write(str(path), 60_000, tls_fraction=0.2, seed=5)
    data = path.read_bytes()
    regions = []
    real = apache_units._exact_region
    monkeypatch.setattr(apache_units, "_exact_region", lambda b, a, z, *r: (regions.append((a, z)), real(b, a, z, *r)))
    fast = _run(FAST, data, 1 << 16, lexer)
    monkeypatch.undo()
    assert fast == _run(GENERIC, data, 1 << 16)
    candidates = sum(1 for _ in decoders._AP_CANDIDATES.finditer(data))
    keys = len(set(re.findall(rb"\[pid (\d+:tid \d+)\]", data)))
    assert sum(fast[2].values()) > 3000 and keys > 100
    # a key's first heads of a range (two, or three with a merging AH00957/AH01114 pair) are its block prefix
    # (classify.Joiner): the exact path reads them, and nothing else on this log
    assert len(regions) <= 3 * keys < candidates / 5, (len(regions), keys, candidates)


# ----------------------------------------------------------------------------------------- no line kind dropped
#
# Each kind of candidate line, placed where the fast path cannot take it as part of a unit: after a key's group is
# resolved (PRE: three units), right after a unit whose group is still weak (WEAK), before a lone library-error line
# that would make that group strong (TAIL), between or after more units (POST). The result must be the generic
# loop's AND differ from the generic loop's without that line: a fast path that skipped the line (took it as part of
# a unit, or lost it between two matches) fails the first assertion, the second proves the line matters.

PRE = ("[Fri Nov 27 10:50:50.000001 2026] [ssl:info] [pid 9:tid 9] [client 1.2.3.4:5] AH02008: SSL library error 1 "
       "in handshake (server a:443)\n"
       "[Fri Nov 27 10:50:50.000002 2026] [ssl:info] [pid 9:tid 9] SSL Library Error: error:0A0000C1:SSL routines::no "
       "shared cipher\n") * 3
WEAK = ("[Fri Nov 27 10:50:54.000001 2026] [ssl:info] [pid 9:tid 9] [client 1.2.3.4:5] AH02008: SSL library error 1 "
        "in handshake (server w:443)\n"
        "[Fri Nov 27 10:50:54.000002 2026] [ssl:info] [pid 9:tid 9] SSL Library Error: something new\n")
TAIL = ("[Fri Nov 27 10:50:56.000001 2026] [ssl:info] [pid 9:tid 9] SSL Library Error: error:0A0000C1:SSL routines::"
        "no shared cipher\n")
POST = ("[Fri Nov 27 10:50:59.000001 2026] [ssl:info] [pid 9:tid 9] [client 1.2.3.4:5] AH01996: SSL handshake failed: "
        "HTTP spoken on HTTPS port; trying to send HTML error page\n"
        "[Fri Nov 27 10:50:59.000002 2026] [ssl:info] [pid 9:tid 9] SSL Library Error: error:0A00009C:SSL routines::"
        "http request\n") * 2
#: continuation rules without a category (AH00959 "disabling worker", AH00898 "Error reading from remote server"):
#: they never change a result, so only the equality is checked for them
NO_EFFECT = {"AH00959", "AH00898"}
S = "[Fri Nov 27 10:50:55.000001 2026] [ssl:info] [pid 9:tid 9] "
KINDS = {
    "lone library error, strong": S + "SSL Library Error: error:0A000412:SSL routines::sslv3 alert bad certificate",
    "lone library error, weak": S + "SSL Library Error: error:0A000126:SSL routines::something else",
    "lone library error, other key": S.replace("9:tid 9", "8:tid 8") + "SSL Library Error: error:0A000102:SSL "
    "routines::unsupported protocol",
    "second library error of another key inside a unit": "@AH02008: SSL library error 1 in handshake (server b:443)\n"
    + S.replace("9:tid 9", "8:tid 8") + "SSL Library Error: error:0A000102:SSL routines::unsupported protocol",
    "three library errors": "@AH02008: SSL library error 1 in handshake\n" + "\n".join(
        [S + "SSL Library Error: something"] * 2 + [S + "SSL Library Error: error:0A000412:SSL routines::sslv3 alert "
                                                      "bad certificate"]),
    **{f"AH{i}": "@AH" + i + ": " + text for i, text in (
        ("02008", "SSL library error 1 in handshake (server c:443)"), ("01996", "SSL handshake failed: HTTP spoken"),
        ("02007", "SSL handshake interrupted by system"), ("02006", "SSL handshake stopped"),
        ("02039", "Certificate Verification: Error (20)"), ("02040", "Certificate Verification: Error (20)"),
        ("02261", "Re-negotiation handshake failed"), ("01382", "Request handshake read timeout"),
        ("01991", "SSL input filter read failed."), ("01992", "SSL library error 1 reading data"),
        ("01993", "SSL output filter write failed."), ("01994", "SSL library error 1 writing data"),
        ("02565", "Certificate and private key a:443:0 from /a and /b do not match"),
        ("02580", "Init: Pass phrase incorrect for key a:443:0"), ("02578", "Init: Pass phrase incorrect"),
        ("02202", "Init: Pass phrase incorrect"), ("02579", "Init: Private key not found"),
        ("02203", "Init: Private key not found"), ("02561", "Failed to configure certificate a:443:0"),
        ("02562", "Failed to configure certificate a:443:0"), ("02572", "Failed to configure at least one certificate"),
        ("02564", "Failed to configure encrypted (?) private key a:443:0"),
        ("02312", "Fatal error initialising mod_ssl"),
        ("00023", "Couldn't create the ssl-cache mutex"), ("00024", "Couldn't set permissions on the ssl-cache mutex"),
        ("01874", "Cannot allocate socache shmcb"), ("00804", "Failed to create SSLSessionCache"),
        ("02026", "Failed to acquire SSL session cache lock"),
        ("00957", "HTTP: attempt to connect to 127.0.0.1:8080 (127.0.0.1:8080) failed"),
        ("00959", "ap_proxy_connect_backend disabling worker for (127.0.0.1) for 60s"),
        ("01114", "HTTP: failed to make connection to backend: 127.0.0.1"),
        ("00940", "HTTP: disabled connection for (127.0.0.1)"),
        ("01102", "error reading status line from remote server 127.0.0.1:8080"),
        ("00898", "Error reading from remote server returned by /x"))},
}


def test_every_candidate_id_is_a_kind_here():
    assert {k[2:] for k in KINDS if k.startswith("AH")} == set(decoders.AH_CANDIDATE_IDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("place", ("between units", "after units"))
@pytest.mark.parametrize("lexer", sorted(LEXERS))
def test_no_line_kind_is_dropped(kind, place, lexer):
    text = KINDS[kind].replace("@", S + "[client 1.2.3.4:5] ")
    parts = [PRE, WEAK, text + "\n", TAIL, POST] if place == "between units" else [PRE, POST, WEAK, text + "\n", TAIL]
    with_line = "".join(parts).encode()
    without = "".join(p for p in parts if p != text + "\n").encode()
    generic = _run(GENERIC, with_line, 1 << 20)
    assert _run(FAST, with_line, 1 << 20, lexer) == generic
    if kind not in NO_EFFECT:
        assert generic[2:6] != _run(GENERIC, without, 1 << 20)[2:6]  # the line counts: dropping it would show
