"""tlsfront.headers and tlsfront.tlsfacts: what the backend and the client see."""

from __future__ import annotations

import pytest

from tlsfront import headers as H
from tlsfront import tlsfacts


def fwd(hdrs, trusted=False, extra=(), host=None):
    return H.forward_request_headers(hdrs, peer_ip=b"10.0.0.9", proto=b"https", local_port=b"443",
                                     trusted=trusted, extra=extra, host=host)


def names(hdrs):
    return [n.lower() for n, _ in hdrs]


def test_hop_by_hop_and_connection_named_fields_removed():
    out = fwd([(b"Host", b"app"), (b"Connection", b"keep-alive, X-Secret"), (b"Keep-Alive", b"300"),
               (b"X-Secret", b"1"), (b"TE", b"trailers"), (b"Trailer", b"X"), (b"Upgrade", b"h2c"),
               (b"Proxy-Connection", b"keep-alive"), (b"Transfer-Encoding", b"chunked"),
               (b"Content-Length", b"3"), (b"Expect", b"100-continue"), (b"Accept", b"*/*")])
    assert names(out)[:2] == [b"host", b"accept"]
    for gone in (b"connection", b"keep-alive", b"x-secret", b"te", b"trailer", b"upgrade",
                 b"proxy-connection", b"transfer-encoding", b"content-length", b"expect"):
        assert gone not in names(out)


def test_host_preserved_and_forwarded_headers_set():
    out = dict(fwd([(b"Host", b"www.example.test:8443")]))
    assert out[b"Host"] == b"www.example.test:8443"
    assert out[b"X-Forwarded-For"] == b"10.0.0.9"
    assert out[b"X-Forwarded-Proto"] == b"https"
    assert out[b"X-Forwarded-Host"] == b"www.example.test:8443"
    assert out[b"X-Forwarded-Port"] == b"443"


def test_untrusted_forwarded_headers_replaced_not_appended():
    out = fwd([(b"Host", b"a"), (b"X-Forwarded-For", b"1.2.3.4"), (b"X-Forwarded-Proto", b"http"),
               (b"x-forwarded-host", b"evil"), (b"X-Forwarded-Port", b"1")])
    assert [v for n, v in out if n.lower() == b"x-forwarded-for"] == [b"10.0.0.9"]
    assert [v for n, v in out if n.lower() == b"x-forwarded-proto"] == [b"https"]
    assert [v for n, v in out if n.lower() == b"x-forwarded-host"] == [b"a"]
    assert [v for n, v in out if n.lower() == b"x-forwarded-port"] == [b"443"]


def test_trusted_proxy_chain_appended_and_kept():
    out = fwd([(b"Host", b"a"), (b"X-Forwarded-For", b"1.2.3.4"), (b"X-Forwarded-For", b"5.6.7.8"),
               (b"X-Forwarded-Proto", b"http")], trusted=True)
    d = dict(out)
    assert d[b"X-Forwarded-For"] == b"1.2.3.4, 5.6.7.8, 10.0.0.9"
    assert d[b"X-Forwarded-Proto"] == b"http"
    assert d[b"X-Forwarded-Port"] == b"443"


@pytest.mark.parametrize("name", [b"X-SSL-Cipher", b"x-ssl-client-verify", b"X_SSL_Client_S_DN",
                                  b"X-Ssl-Protocol", b"Client-Cert", b"client_cert", b"Client-Cert-Chain",
                                  b"X-SSL-Anything-New"])
def test_spoofed_tls_facts_always_stripped(name):
    facts = [(b"X-SSL-Client-Verify", b"NONE")]
    out = fwd([(b"Host", b"a"), (name, b"SUCCESS")], extra=facts)
    assert [v for n, v in out if n.lower().replace(b"_", b"-") == name.lower().replace(b"_", b"-")
            and v == b"SUCCESS"] == []
    assert out[-1] == (b"X-SSL-Client-Verify", b"NONE")


def test_absolute_form_host_replaces_header():
    out = dict(fwd([(b"Host", b"fake")], host=b"real:1"))
    assert out[b"Host"] == b"real:1" and out[b"X-Forwarded-Host"] == b"real:1"


def test_response_headers():
    out = H.forward_response_headers([(b"Content-Type", b"text/plain"), (b"Connection", b"close, X-Drop"),
                                      (b"X-Drop", b"1"), (b"Keep-Alive", b"timeout=5"),
                                      (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5"),
                                      (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")])
    assert out == [(b"Content-Type", b"text/plain"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]


def test_tls_fact_headers_and_dn_escaping():
    facts = tlsfacts.TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, True, "SUCCESS",
                              subject_dn="CN=alice\r\nX-SSL-Client-Verify: SUCCESS", issuer_dn="CN=ca",
                              serial="1F", cert_der=b"\x30\x03\x02\x01\x01")
    out = tlsfacts.headers_for(facts, client_cert=True)
    d = dict(out)
    assert d[b"X-SSL-Protocol"] == b"TLSv1.3" and d[b"X-SSL-Cipher-Bits"] == b"128"
    assert d[b"X-SSL-Session-Reused"] == b"Resumed"
    assert d[b"X-SSL-Client-S-DN"] == b"CN=alice\\x0D\\x0AX-SSL-Client-Verify: SUCCESS"
    assert d[b"Client-Cert"] == b":MAMCAQE=:"  # RFC 9440: sf-binary of the DER
    for _, v in out:
        assert b"\r" not in v and b"\n" not in v
    no_cert = tlsfacts.headers_for(tlsfacts.TLSFacts("TLSv1.2", "X", 256, False, "NONE"), client_cert=True)
    assert [n for n, _ in no_cert] == [b"X-SSL-Protocol", b"X-SSL-Cipher", b"X-SSL-Cipher-Bits",
                                       b"X-SSL-Session-Reused", b"X-SSL-Client-Verify"]


@pytest.mark.parametrize("module", ["tlsfront.http1", "tlsfront.headers", "tlsfront.frontend"])
def test_docstring_examples(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_certless_tls_headers_are_built_once_per_combination():
    from tlsfront import tlsfacts

    a = tlsfacts.headers_for(tlsfacts.TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, False, "NONE"),
                             client_cert=True)
    b = tlsfacts.headers_for(tlsfacts.TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, False, "NONE"),
                             client_cert=False)
    c = tlsfacts.headers_for(tlsfacts.TLSFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, True, "NONE"),
                             client_cert=False)
    assert a is b and isinstance(a, tuple)  # one shared, read-only tuple
    assert dict(c)[b"X-SSL-Session-Reused"] == b"Resumed" and dict(a)[b"X-SSL-Session-Reused"] == b"Initial"
