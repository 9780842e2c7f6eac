"""affinity.py: the BPF program as data (interpreted), then the real kernel routing connections.

The kernel test is the one that matters: N sockets in one SO_REUSEPORT group with the
program attached; connections from many 127.x source addresses must each land on the
socket `worker_for(source, N)` says, every time.
"""

from __future__ import annotations

import select
import socket
from collections import Counter
from pathlib import Path

import pytest

from tlsfront import affinity
from tlsfront.model import Address, AdminSettings, Backend, Config, ServerSettings, TLSSettings, VHost

from helpers import free_port


def test_program_shape_and_bounds():
    prog = affinity.program(4)
    assert prog[-1] == (affinity.BPF_RET | affinity.BPF_A, 0, 0, 0)
    assert (affinity.BPF_ALU | affinity.BPF_MOD | affinity.BPF_K, 0, 0, 4) in prog
    for bad in (0, 70000):
        with pytest.raises(ValueError, match="out of range"):
            affinity.program(bad)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 16])
def test_interpreted_index_is_in_range_and_stable(n):
    ips = [f"10.{a}.{b}.{c}" for a in range(2) for b in range(4) for c in range(0, 256, 17)]
    for ip in ips:
        first = affinity.worker_for(ip, n)
        assert 0 <= first < n
        assert affinity.worker_for(ip, n) == first


def test_spread_over_neighbouring_addresses():
    """The multiplicative hash spreads a /24 of clients: no worker gets under 15 % or over 35 %."""
    counts = Counter(affinity.worker_for(f"192.0.2.{i}", 4) for i in range(256))
    assert set(counts) == {0, 1, 2, 3}
    assert all(0.15 * 256 <= c <= 0.35 * 256 for c in counts.values()), counts


def test_ipv6_uses_the_whole_source_address():
    """Addresses differing only in the last word, or only in the first, may differ in worker:
    every word is folded in (an IPv4-only program would read the IPv6 flow label)."""
    last = {affinity.worker_for(f"2001:db8::{i:x}", 4) for i in range(64)}
    first = {affinity.worker_for(f"2001:{i:x}::1", 4) for i in range(64)}
    assert last == {0, 1, 2, 3} and first == {0, 1, 2, 3}


def test_version_nibble_selects_the_header_layout():
    v4 = affinity.pack_ip_header("198.51.100.7")
    v6 = affinity.pack_ip_header("2001:db8::7")
    assert v4[0] >> 4 == 4 and v4[12:16] == socket.inet_aton("198.51.100.7")
    assert v6[0] >> 4 == 6 and v6[8:24] == socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    prog = affinity.program(1000)
    # IPv4: hash of the source word alone.
    word = int.from_bytes(socket.inet_aton("198.51.100.7"), "big")
    expected = (((word * affinity.HASH_MULTIPLIER) & 0xFFFFFFFF) >> 16) % 1000
    assert affinity.run_program(prog, v4) == expected


def _accepting(socks: list[socket.socket], src: str, dst: tuple[str, int]) -> int:
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    with socket.socket(family) as c:
        c.bind((src, 0))
        c.connect(dst)
        ready, _, _ = select.select(socks, [], [], 2.0)
        assert len(ready) == 1, f"{len(ready)} sockets readable for one connection from {src}"
        conn, _ = ready[0].accept()
        conn.close()
        return socks.index(ready[0])


@pytest.mark.parametrize("n", [2, 4])
def test_kernel_routes_each_source_to_the_predicted_socket(n):
    port = free_port()
    socks = affinity.bind_group(Address("127.0.0.1", port), n)
    try:
        sources = [f"127.0.{a}.{b}" for a in range(2) for b in range(1, 9)]
        seen = {}
        for src in sources:
            got = {_accepting(socks, src, ("127.0.0.1", port)) for _ in range(4)}
            assert got == {affinity.worker_for(src, n)}, f"{src}: kernel chose {got}"
            seen[src] = got.pop()
        assert len(set(seen.values())) == n  # 16 sources reach every socket
    finally:
        for s in socks:
            s.close()


def test_kernel_routes_ipv6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host (the interpreter tests above still cover the program)")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip("::1 is not configured on this host")
    socks = affinity.bind_group(Address("::1", port), 4)
    try:
        got = {_accepting(socks, "::1", ("::1", port)) for _ in range(4)}
        assert got == {affinity.worker_for("::1", 4)}
    finally:
        for s in socks:
            s.close()


def test_a_second_group_on_a_busy_address_fails_instead_of_joining():
    """SO_REUSEPORT sockets of one user silently join an existing group: a second instance
    would share the traffic. The probe makes it EADDRINUSE, explained."""
    port = free_port()
    address = Address("127.0.0.1", port)
    first = affinity.bind_group(address, 2)
    try:
        with pytest.raises(affinity.BindFailure) as info:
            affinity.open_listener(address, True, 2)
        assert f"127.0.0.1:{port}" in str(info.value)
        with pytest.raises(affinity.BindFailure):
            affinity.open_listener(address, False, 2)
    finally:
        for s in first:
            s.close()


def test_the_group_index_survives_a_worker_closing_its_copy():
    """What the master relies on: a duplicate fd (the worker's) closing does not change the group."""
    port = free_port()
    socks = affinity.bind_group(Address("127.0.0.1", port), 4)
    try:
        src = "127.0.0.9"
        index = affinity.worker_for(src, 4)
        dup = socks[index].dup()
        dup.close()  # a worker that adopted this socket died
        assert _accepting(socks, src, ("127.0.0.1", port)) == index
    finally:
        for s in socks:
            s.close()


def _config(*vhosts: VHost) -> Config:
    return Config(Path("t.toml"), ServerSettings(), AdminSettings(), TLSSettings(), vhosts)


@pytest.mark.parametrize("mode, workers, expected", [
    ("shared", 4, True),
    ("shared", 1, False),
    ("per-worker", 4, False),
    ("off", 4, False),
    (None, 4, False),  # plain HTTP: no sessions to keep
], ids=["shared-4", "shared-1", "per-worker", "off", "plain"])
def test_wants_affinity(mode, workers, expected):
    tls = None if mode is None else TLSSettings(session_cache=mode)
    v = VHost(0, "a.test", Address("127.0.0.1", 8443), tls, (Backend("http://127.0.0.1:1", "127.0.0.1", 1),))
    assert affinity.wants_affinity(_config(v), Address("127.0.0.1", 8443), workers) is expected
    # A wildcard socket serves the port's vhosts of every address.
    assert affinity.wants_affinity(_config(v), Address("*", 8443), workers) is expected
    assert affinity.wants_affinity(_config(v), Address("127.0.0.1", 9443), workers) is False
