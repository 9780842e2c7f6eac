"""VHostTable: address-based selection (exact before wildcard), name-based plain vhosts, conflicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsfront.model import Address, Backend, CertKey, TLSSettings, VHost
from tlsfront.vhosts import VHostConflict, VHostTable, host_from_header, normalize_ip

B = (Backend("http://127.0.0.1:8081", "127.0.0.1", 8081),)
TLS = TLSSettings(certs=(CertKey("a.crt", "a.key"),))  # type: ignore[arg-type]


def vh(index: int, listen: str, name: str = "", tls: bool = False, aliases: tuple[str, ...] = ()) -> VHost:
    host, port = listen.rsplit(":", 1)
    return VHost(index=index, server_name=name or f"v{index}", listen=Address(host, int(port)),
                 tls=TLS if tls else None, backends=B, server_aliases=aliases)


def test_exact_address_before_wildcard():
    table = VHostTable([
        vh(0, "*:443", "wild", tls=True),
        vh(1, "127.0.0.2:443", "two", tls=True),
        vh(2, "127.0.0.1:80", "plain-one"),
    ])
    assert table.tls_for("127.0.0.2", 443).server_name == "two"
    assert table.tls_for("127.0.0.1", 443).server_name == "wild"
    assert table.tls_for("::ffff:127.0.0.2", 443).server_name == "two"  # v4-mapped on a v6 socket
    assert table.tls_for("127.0.0.1", 8443) is None  # nothing on that port
    assert table.tls_for("127.0.0.1", 80) is None  # plain address
    assert table.plain_for("127.0.0.1", 80, b"whatever").server_name == "plain-one"
    assert table.plain_for("127.0.0.2", 80, None) is None
    assert table.plain_for("127.0.0.1", 443, "x") is None  # TLS address


def test_plain_name_based_selection_with_default_first():
    table = VHostTable([
        vh(0, "127.0.0.1:80", "first.test"),
        vh(1, "127.0.0.1:80", "second.test", aliases=("*.second.test", "alt.test")),
        vh(2, "127.0.0.1:80", "third.test"),
    ])
    pick = lambda host: table.plain_for("127.0.0.1", 80, host).server_name  # noqa: E731
    assert pick("third.test") == "third.test"
    assert pick("THIRD.test:80") == "third.test"  # case and port ignored
    assert pick("third.test.") == "third.test"  # trailing dot
    assert pick("www.second.test") == "second.test"  # wildcard alias
    assert pick("alt.test") == "second.test"
    assert pick("unknown.test") == "first.test"  # the first vhost is the default, as in Apache
    assert pick(None) == "first.test"  # HTTP/1.0 without Host
    assert pick(b"second.test") == "second.test"


def test_bind_addresses_distinct_and_wildcard_absorbs_exact():
    table = VHostTable([
        vh(0, "127.0.0.1:8443", tls=True),
        vh(1, "127.0.0.2:8443", tls=True),
        vh(2, "127.0.0.1:8080"),
        vh(3, "127.0.0.1:8080"),
        vh(4, "*:9443", tls=True),
        vh(5, "127.0.0.3:9443", tls=True),
    ])
    assert table.bind_addresses() == [
        Address("127.0.0.1", 8443), Address("127.0.0.2", 8443), Address("127.0.0.1", 8080),
        Address("*", 9443),
    ]
    v6 = VHostTable([vh(0, "*:443", tls=True), vh(1, "::1:443", tls=True), vh(2, "127.0.0.9:443", tls=True)])
    assert v6.bind_addresses() == [Address("*", 443), Address("::1", 443)]
    # The wildcard socket still gives 127.0.0.3's connections to vhost 5.
    assert table.tls_for("127.0.0.3", 9443).index == 5
    assert table.tls_for("127.0.0.4", 9443).index == 4


def test_two_tls_vhosts_on_one_address_is_an_error_with_the_faq_reason():
    with pytest.raises(VHostConflict) as info:
        VHostTable([vh(0, "127.0.0.1:443", "a", tls=True), vh(1, "127.0.0.1:443", "b", tls=True)])
    (p,) = info.value.problems
    assert p.where == "vhost[1].listen"
    assert "before any Host header can be read" in p.message
    assert "own IP address" in p.fix and "own port" in p.fix


def test_tls_and_plain_on_one_address_is_an_error():
    with pytest.raises(VHostConflict) as info:
        VHostTable([vh(0, "127.0.0.1:8080"), vh(1, "127.0.0.1:8080", tls=True)])
    (p,) = info.value.problems
    assert p.where == "vhost[1].listen" and "either TLS or plain HTTP" in p.message


def test_tls_on_exact_and_plain_on_wildcard_same_port_is_allowed():
    table = VHostTable([vh(0, "*:8080"), vh(1, "127.0.0.2:8080", tls=True)])
    assert table.tls_for("127.0.0.2", 8080).index == 1
    assert table.plain_for("127.0.0.1", 8080, None).index == 0
    assert table.plain_for("127.0.0.2", 8080, None) is None


@pytest.mark.parametrize(
    "header, host",
    [("Example.COM", "example.com"), ("example.com:8080", "example.com"), ("[::1]:443", "::1"),
     ("[::1]", "::1"), ("", None), (None, None), ("a.test.", "a.test")],
)
def test_host_from_header(header, host):
    assert host_from_header(header) == host


def test_normalize_ip():
    assert normalize_ip("::ffff:10.0.0.1") == "10.0.0.1"
    assert normalize_ip("0:0::1") == "::1"
    assert normalize_ip("fe80::1%eth0") == "fe80::1"


IPS = ["127.0.0.1", "127.0.0.2", "::1", "*"]
PORTS = [80, 443, 8443]


@given(st.lists(st.tuples(st.sampled_from(IPS), st.sampled_from(PORTS)), min_size=1, max_size=8, unique=True),
       st.sampled_from(IPS[:3]), st.sampled_from(PORTS))
def test_lookup_matches_brute_force(listens, ip, port):
    """One TLS vhost per address: tls_for equals 'exact match, else wildcard match' by brute force."""
    vhosts = [vh(i, f"{h}:{p}", tls=True) for i, (h, p) in enumerate(listens)]
    table = VHostTable(vhosts)
    exact = [v for v in vhosts if v.listen == Address(ip, port)]
    wild = [v for v in vhosts if v.listen == Address("*", port)]
    expected = (exact or wild or [None])[0]
    assert table.tls_for(ip, port) == expected
    binds = table.bind_addresses()
    assert len(binds) == len(set(binds))
    # every vhost is reachable through some bound socket
    for v in vhosts:
        assert v.listen in binds or (Address("*", v.listen.port) in binds and ":" not in v.listen.host)
