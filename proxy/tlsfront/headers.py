"""Header rewriting on the way through the proxy (sans-IO, bytes in, bytes out).

Requests (client -> backend):
- hop-by-hop fields are removed (RFC 9110 7.6.1: Connection and every field it
  names, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade),
  and so are Content-Length and Expect: the forwarder sets the framing itself
  and answers `100 Continue` itself;
- every field that could pass for a TLS fact is removed, whatever the vhost's
  setting (issue 2): `X-SSL-*`, `Client-Cert`, `Client-Cert-Chain`, also spelt
  with underscores, because CGI-style backends (PHP, mod_wsgi, Rack) see
  `X_SSL_CIPHER` and `X-SSL-Cipher` alike as HTTP_X_SSL_CIPHER;
- X-Forwarded-For/-Proto/-Host/-Port: from a trusted peer (a load balancer in
  `trusted_proxies`) X-Forwarded-For is appended to and the others kept; from
  anyone else all four are replaced by what this proxy saw;
- Host is kept (mod_proxy's ProxyPreserveHost On).

Responses (backend -> client): hop-by-hop fields and the framing fields go;
the frontend writes its own framing.

Example::

    >>> out = forward_request_headers(
    ...     [(b"Host", b"app"), (b"X-SSL-Cipher", b"fake"), (b"Connection", b"x-a"), (b"X-A", b"1")],
    ...     peer_ip=b"10.0.0.1", proto=b"https", local_port=b"443", trusted=False, extra=())
    >>> [n for n, _ in out]
    [b'Host', b'X-Forwarded-For', b'X-Forwarded-Proto', b'X-Forwarded-Host', b'X-Forwarded-Port']
"""

from __future__ import annotations

from collections.abc import Iterable

Header = tuple[bytes, bytes]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade",
})

# Set by the proxy itself on requests: the client's copies never pass.
_REQUEST_DROP = HOP_BY_HOP | {b"content-length", b"expect", b"client-cert", b"client-cert-chain",
                              b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                              b"x-forwarded-port"}
_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port")
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length"}
_OWS = (b" ", b"\t")


def connection_tokens(headers: Iterable[Header]) -> set[bytes]:
    """Lower-case field names listed in Connection headers (RFC 9110 7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def is_tls_fact_name(lname: bytes) -> bool:
    """True for names that could pass for one of our TLS facts (lower-case)."""
    if b"_" in lname:
        lname = lname.replace(b"_", b"-")
    return lname.startswith(b"x-ssl") or lname in (b"client-cert", b"client-cert-chain")


def forward_request_headers(headers: list[Header], *, peer_ip: bytes, proto: bytes,
                            local_port: bytes, trusted: bool,
                            extra: Iterable[Header], host: bytes | None = None,
                            default_host: bytes = b"") -> list[Header]:
    """The request's fields as the backend must see them (without framing).

    `extra`: the TLS facts (tlsfacts.headers_for) appended after the client's fields.
    `host`: the Host value when the request target was absolute-form.
    `default_host`: the Host to send when the client sent none (HTTP/1.0):
    the backend gets HTTP/1.1, which requires one (RFC 9112 3.2).
    """
    out: list[Header] = []
    connection_named: set[bytes] | None = None
    incoming: dict[bytes, bytes] = {}
    drop = _REQUEST_DROP
    for name, value in headers:
        lname = name.lower()
        if lname in drop:
            if lname == b"connection":
                connection_named = connection_tokens([(name, value)]) | (connection_named or set())
            elif trusted and lname in _FORWARDED:
                # Several copies are one list (RFC 9110 5.3).
                incoming[lname] = incoming[lname] + b", " + value if lname in incoming else value
            continue
        if b"_" in lname or lname[:5] == b"x-ssl":
            if is_tls_fact_name(lname):
                continue
        if lname == b"host" and host is not None:
            value = host
        elif value[-1:] in _OWS:
            # llhttp keeps trailing whitespace in values; RFC 9112 5 says it is not part of
            # the value, and `Host: a ` vs `Host: a` is a routing difference downstream.
            value = value.rstrip(b" \t")
        out.append((name, value))
    if connection_named:
        out = [(n, v) for n, v in out if n.lower() not in connection_named]
    host_value = host if host is not None else next((v for n, v in out if n.lower() == b"host"), None)
    if host_value is None:
        host_value = default_host
        out.insert(0, (b"Host", default_host))
    if trusted and incoming:
        xff = incoming.get(b"x-forwarded-for")
        out.append((b"X-Forwarded-For", xff + b", " + peer_ip if xff else peer_ip))
        out.append((b"X-Forwarded-Proto", incoming.get(b"x-forwarded-proto", proto)))
        out.append((b"X-Forwarded-Host", incoming.get(b"x-forwarded-host", host_value)))
        out.append((b"X-Forwarded-Port", incoming.get(b"x-forwarded-port", local_port)))
    else:
        out += ((b"X-Forwarded-For", peer_ip), (b"X-Forwarded-Proto", proto),
                (b"X-Forwarded-Host", host_value), (b"X-Forwarded-Port", local_port))
    out.extend(extra)
    return out


def forward_response_headers(headers: list[Header]) -> list[Header]:
    """The backend's response fields as the client must see them (without framing)."""
    drop = _RESPONSE_DROP
    out = []
    named: set[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in drop:
            if lname == b"connection":
                named = connection_tokens([(name, value)]) | (named or set())
            continue
        out.append((name, value))
    if named:
        out = [(n, v) for n, v in out if n.lower() not in named]
    return out
