"""hypothesis on the ClientHello / plain-HTTP sniffer (issue 11): the answer never depends on
how the first bytes were cut into reads.

tests/proxy/test_sniff.py already checks: random bytes and handshake-framed junk never
raise, every split of *real* hellos, hellos spanning records, mutated real hellos never
raise, HelloWatcher byte by byte on real hellos and its bounds. Not covered there, added here:

- `classify` decides on prefixes consistently: for any byte string, every prefix is
  NEED_MORE or the final answer, and once decided a longer prefix never changes it (the
  listener decides on whatever arrived in the first read);
- `HelloWatcher` on *fuzzed* first flights (hellos from Python's ssl with random SNI/ALPN,
  re-fragmented into records of random sizes, then mutated): any split of the stream gives
  the same result as feeding it whole, and a complete result agrees with
  `parse_client_hello` on the bytes the watcher consumed.
"""

from __future__ import annotations

import ssl

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsfront import sniff
from tlsfront.sniff import HelloWatcher, Kind

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIRST_BYTES = st.one_of(
    st.binary(max_size=20),
    st.builds(lambda m, rest: m + rest, st.sampled_from(sniff.HTTP_METHODS), st.binary(max_size=8)),
    st.builds(lambda rest: b"\x16" + rest, st.binary(max_size=8)),
    st.builds(lambda rest: b"\x80" + rest, st.binary(max_size=8)),
)


@SETTINGS
@given(FIRST_BYTES)
def test_classify_is_consistent_on_prefixes(data):
    final = sniff.classify(data)
    decided = None
    for i in range(len(data) + 1):
        kind = sniff.classify(data[:i])
        if decided is not None:
            assert kind is decided, (data[:i], kind, decided)
        elif kind is not Kind.NEED_MORE:
            decided = kind
        assert kind in (Kind.NEED_MORE, final) or final is Kind.NEED_MORE, (data[:i], kind, final)
    if len(data) >= sniff.MAX_SNIFF_BYTES:
        assert final is not Kind.NEED_MORE  # the bound the listener relies on


def _hello(sni: str | None, alpn: list[str]) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


HELLOS = st.builds(
    _hello,
    st.one_of(st.none(), st.from_regex(r"[a-z]{1,20}(\.[a-z]{1,10}){0,3}", fullmatch=True)),
    st.lists(st.sampled_from(["http/1.1", "h2", "x" * 40]), max_size=3, unique=True),
)


def refragment(flight: bytes, sizes: list[int]) -> bytes:
    """The handshake bytes of `flight`'s first record(s) cut into records of `sizes` (cycled)."""
    hs = bytearray()
    pos = 0
    while pos + 5 <= len(flight):
        length = int.from_bytes(flight[pos + 3:pos + 5], "big")
        hs += flight[pos + 5:pos + 5 + length]
        pos += 5 + length
    out = bytearray()
    i = 0
    while hs:
        n = max(1, sizes[i % len(sizes)])
        out += b"\x16\x03\x01" + min(n, len(hs)).to_bytes(2, "big") + hs[:n]
        del hs[:n]
        i += 1
    return bytes(out)


@st.composite
def flights(draw) -> bytes:
    data = bytearray(refragment(draw(HELLOS), draw(st.lists(st.integers(1, 600), min_size=1, max_size=4))))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if op == "flip" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:]
    if draw(st.booleans()):
        data += b"GET / HTTP/1.1\r\n"  # bytes after the hello (must not change the result)
    return bytes(data)


def _watch(pieces) -> tuple[sniff.HelloResult | None, int]:
    w = HelloWatcher()
    result = None
    fed = 0
    for p in pieces:
        r = w.feed(p)
        fed += len(p)
        if r is not None:
            assert result is None  # the result comes once
            result = r
    return result, fed


def _key(r: sniff.HelloResult | None):
    if r is None:
        return None
    return (r.status, r.hello, r.consumed) if r.hello is not None else (r.status, r.consumed)


@SETTINGS
@given(flights(), st.data())
def test_hello_watcher_any_split_equals_whole(stream, data):
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=10))))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    whole, _ = _watch([stream])
    split, _ = _watch(pieces)
    assert _key(split) == _key(whole)
    if whole is not None and whole.status is sniff.HelloStatus.OK:
        again = sniff.parse_client_hello(stream[:whole.consumed])
        assert again.status is sniff.HelloStatus.OK and again.hello == whole.hello
