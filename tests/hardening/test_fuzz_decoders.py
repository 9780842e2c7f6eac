"""hypothesis on the analyzer's decoders with *real* lines mutated (issue 11).

tests/analyzer/test_decoders.py already feeds random bytes (also behind a valid Apache or
nginx prefix) to every format: decoders never raise. Random bytes rarely get past the
first tokens of a grammar; lines from the golden corpus (tests/data/logs, real Apache,
nginx and HAProxy output), mutated a little, reach the deep branches (client field, AH
codes, OpenSSL error tuples, alert numbers). Properties, per format detected on the file:

- `decode` never raises on a mutated line, and returns None or a record;
- `understood` counts at most one per line, and is additive over any line-aligned split of
  a block (the scan splits files into ranges and sums: tests/analyzer/test_scan.py);
- `block_stats` never raises and counts at most one per line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlslog import decoders
from tlslog.decoders import Ctx
from tlslog.timeparse import Clock

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
SKIP_SUFFIXES = (".golden", ".zst", ".gz", ".bz2", ".xz", ".md", ".json")


def _corpus() -> dict[str, list[bytes]]:
    by_format: dict[str, list[bytes]] = {}
    for path in sorted(LOGS.glob("*/*")):
        if path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        fmt = decoders.detect(data[:20000])
        if fmt is not None:
            by_format.setdefault(fmt.name, []).extend(line for line in data.split(b"\n") if line)
    return by_format


CORPUS = _corpus()
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JUNK = st.sampled_from([b"\x00", b"\r", b"\xff", b"[", b"]", b":", b" ", b"(", b")", b"\"", b"AH0", b"error:",
                        b"SSL routines::", b"(SSL alert number ", b"[client ", b"TLSF", b"99999999999999999999",
                        b"\xe2\x80\xa8", b"-", b"0"])


@st.composite
def mutated_line(draw, fmt: str) -> bytes:
    line = bytearray(draw(st.sampled_from(CORPUS[fmt])))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(line)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if op == "insert":
            line[i:i] = draw(JUNK)
        elif op == "delete":
            del line[i:i + draw(st.integers(1, 12))]
        elif op == "replace" and i < len(line):
            line[i] = draw(st.integers(0, 255))
        else:
            del line[i:]
    return bytes(line).replace(b"\n", b" ")


def test_corpus_covers_the_formats():
    assert {"apache_error", "apache22_error", "nginx_error", "haproxy", "access", "ssl_request"} <= set(CORPUS)


@pytest.mark.parametrize("fmt", sorted(CORPUS))
@SETTINGS
@given(data=st.data())
def test_mutated_real_lines(fmt: str, data):
    f = decoders.FORMATS[fmt]
    lines = [data.draw(mutated_line(fmt)) for _ in range(data.draw(st.integers(1, 6)))]
    block = b"\n".join(lines) + b"\n"
    n = len(lines)
    if f.decode is not None:
        for i, line in enumerate(lines):
            f.decode(line, i, Ctx(Clock("UTC")))
    total = f.understood(block, 0, len(block), n)
    assert 0 <= total <= n
    # additive over a line-aligned split
    cut = data.draw(st.integers(0, n))
    mid = len(b"\n".join(lines[:cut]) + b"\n") if cut else 0
    left = f.understood(block, 0, mid, cut)
    right = f.understood(block, mid, len(block), n - cut)
    assert left + right == total
    if f.block_stats is not None:
        assert 0 <= f.block_stats(block, Ctx(Clock("UTC")), 0, len(block)) <= n
