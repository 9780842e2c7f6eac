"""The C lexer of Apache 2.4 units (``tlslog._units.hits``) returns exactly what the Python one returns
(``apache_units._py_hits``: the regex ``_AP_UNITS_IDS`` and the strict head ``decoders._AP24_HEAD``), on generated
logs, on those logs with bytes inserted, deleted and replaced where the grammar is decided, and on any slice of them;
and it is the lexer ``tlslog scan`` uses (a build that fell back to Python would pass every other test, slowly).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_units import log
from tlslog import _units, apache_units

#: bytes at which the grammar decides something (tlslog/_units.c's grammar), and pieces of it
PIECES = (b"\n", b" ", b"[", b"]", b":", b".", b"(", b")", b"-", b"0", b"7", b"a", b"Z", b"_", b"\xff", b"AH0",
          b"AH02008: ", b"AH00957: ", b"AH01102: ", b"AH09999: ", b"] [pid ", b":tid ", b"SSL Library Error: ",
          b"[client ", b"[remote ", b" AH", b"(70007)x: ", b".123456789", b".1234567890", b"Fri ", b"Nov ")


def hits(lex, data: bytes, start: int, end: int):
    return lex(data, start, end, apache_units.ID_TABLE)


def assert_same(data: bytes, start: int = 0, end: int | None = None) -> None:
    end = len(data) if end is None else end
    assert hits(_units.hits, data, start, end) == hits(apache_units._py_hits, data, start, end)


@settings(max_examples=500, deadline=None)
@given(data=log(), a=st.integers(0, 1 << 16), b=st.integers(0, 1 << 16))
def test_c_lexer_equals_python_on_generated_logs_and_any_slice(data, a, b):
    assert_same(data)
    a, b = sorted((min(a, len(data)), min(b, len(data))))
    assert_same(data, a, b)


@st.composite
def mutated(draw) -> bytes:
    """A generated log with a few edits: a piece inserted, bytes deleted or replaced by a piece."""
    data = bytearray(draw(log()))
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data)))
        what = draw(st.integers(0, 2))
        piece = draw(st.sampled_from(PIECES))
        if what == 0:
            data[i:i] = piece
        elif what == 1:
            del data[i:i + draw(st.integers(1, 12))]
        else:
            data[i:i + len(piece)] = piece
    return bytes(data)


@settings(max_examples=1000, deadline=None)
@given(data=mutated(), a=st.integers(0, 400))
def test_c_lexer_equals_python_on_mutated_logs(data, a):
    assert_same(data)
    assert_same(data, min(a, len(data)))


@settings(max_examples=500, deadline=None)
@given(data=st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join))
def test_c_lexer_equals_python_on_piece_soup(data):
    assert_same(data)


HEAD = b"[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 7:tid 9] [client 1.2.3.4:5] "
CONT = b"\n[Fri Nov 27 10:50:52.123470 2026] [ssl:info] [pid 7:tid 9] SSL Library Error: error:0A000412:x"


@pytest.mark.parametrize("line", [
    HEAD + b"AH02008: SSL library error 1 in handshake (server w:443)" + CONT + CONT + CONT,
    HEAD + b"AH02008: x" + CONT.replace(b"7:tid 9", b"8:tid 1"),  # a continuation of another key (Python decides)
    HEAD + b"AH02008:",  # no space: no hit
    HEAD + b"AH02008: ",  # an empty body at the end of the block
    HEAD[:-1],  # no ID
    HEAD.replace(b".123456", b".1234567890") + b"AH02008: x",  # 10 digits of fraction: not the strict head
    HEAD.replace(b".123456", b"") + b"AH02008: x",  # no fraction
    HEAD.replace(b"ssl:info", b"info") + b"AH02008: x",  # no module
    HEAD.replace(b"ssl:info", b"proxy_http:trace5") + b"AH00957: x",
    HEAD.replace(b"ssl:info", b"a:b:info") + b"AH02008: x",  # two colons: not the head
    *(HEAD.replace(b"[ssl:info]", level) + b"AH02008: x"  # levels that are not, and one that is
      for level in (b"[5]", b"[]", b"[ssl:]", b"[:]", b"[ssl:info99]", b"[ssl:INFO]", b"[-_9:trace8]")),
    HEAD.replace(b"[client 1.2.3.4:5] ", b"(70007)The timeout specified has expired: [remote 1:2] ") + b"AH01996: x",
    HEAD.replace(b"[client 1.2.3.4:5] ", b"(-3)x: ") + b"AH02007: x",
    *(HEAD.replace(b"[client 1.2.3.4:5] ", errno) + b"AH02007: x"  # not an errno: not the head
      for errno in (b"(x)y: ", b"()y: ", b"(-)y: ", b"(-1y: ", b"(1)y:", b"(1)y[: ")),
    HEAD.replace(b"7:tid 9", b"7") + b"AH02008: x",  # no tid
    HEAD.replace(b"7:tid 9", b"7:tid ") + b"AH02008: x",
    HEAD + b"x AH01964: y AH02008: z",  # " AH" before the ID: not the head
    HEAD.replace(b"[client 1.2.3.4:5] ", b"(104)x AH y: ") + b"AH02008: x",  # ... even inside the head's fields
    HEAD.replace(b"1.2.3.4:5", b"1.2 AH3") + b"AH02008: x",
    HEAD + b"AH01102: x AH02008: y",  # a second hit in the line
    HEAD.replace(b"Fri", b"Fry") + b"AH02008: x",
    b"AH02008: x\n" + HEAD + b"AH02008: y",  # a hit at the block's start, no head
])
def test_c_lexer_equals_python_on_edge_cases(line):
    for end in range(len(line) + 1) if len(line) < 400 else (len(line),):
        assert_same(line, 0, end)


def test_c_lexer_finds_units_and_their_fields():
    """The equality above is not vacuous: the lexers do find the unit, its library-error lines and its head."""
    line = HEAD + b"AH02008: SSL library error 1 in handshake (server w:443)" + CONT + CONT
    (hit,), taken = hits(_units.hits, line, 0, len(line))
    fields = dict(zip(apache_units.HIT_FIELDS, hit))
    assert taken == 2 and fields["idb"] == b"2008" and fields["key"] == b"7:tid 9" == fields["k1"] == fields["k2"]
    assert fields["skey"] == b"Fri Nov 27 10:50:52 2026" and fields["frac"] == 0.123456
    assert fields["body"] == b"SSL library error 1 in handshake (server w:443)" and fields["end"] == len(line)


def test_c_lexer_refuses_bad_arguments():
    with pytest.raises(ValueError, match="10000"):
        _units.hits(b"x", 0, 1, b"")
    with pytest.raises(ValueError, match="out of the block"):
        _units.hits(b"x", 0, 2, apache_units.ID_TABLE)
    with pytest.raises(ValueError, match="out of the block"):
        _units.hits(b"x", 1, 0, apache_units.ID_TABLE)


@pytest.mark.skipif(bool(os.environ.get("TLSLOG_PURE_PYTHON")), reason="TLSLOG_PURE_PYTHON is set: Python lexer")
def test_scan_uses_the_c_lexer():
    assert apache_units.lex is _units.hits


def test_c_lexer_leaks_no_reference():
    """Every object the C lexer makes is returned or freed: 200 calls over a block of 3,000 units leave nothing
    behind (a leaked tuple, list or bytes per call would show as megabytes)."""
    import gc
    import tracemalloc

    unit = HEAD + b"AH02008: SSL library error 1 in handshake (server w:443)" + CONT + b"\n"
    block = unit * 3000 + HEAD + b"AH01102: x\n"
    hits(_units.hits, block, 0, len(block))  # the ID cache is made once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            found, taken = hits(_units.hits, block, 0, len(block))
        assert len(found) == 3001 and taken == 3000
        del found
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 << 10, grown
