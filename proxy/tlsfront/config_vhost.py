"""One `[[vhost]]` -> `model.VHost`, and the checks across all vhosts (vhosts.py's table).

Keys: listen (``"IP:PORT"`` or ``"*:PORT"``), tls (true, false or a table of `[tls]`
overrides, config_tls.py), server_name, server_aliases, backends
(``["http://host:port", ...]``), [vhost.forwarding] (trusted_proxies, tls_headers,
client_cert_header, preserve_host), redirect_to_https (plain vhosts), hsts_max_age_seconds
and plain_http_answer (TLS vhosts), ssl_nossl_suffix_redirects. Example::

    [[vhost]]
    listen = "127.0.0.1:8443"
    tls = true
    server_name = "www.example.test"
    backends = ["http://127.0.0.1:8081"]
"""

from __future__ import annotations

import ipaddress
from typing import Any

from . import model
from .config_table import _MISSING, _Ctx, _non_negative, _Table
from .config_tls import TLS_KEYS, _read_tls
from .config_values import parse_address, parse_backend

PLAIN_HTTP_ANSWER = ("400", "redirect")


def _read_forwarding(ctx: _Ctx, data: Any, key: str) -> model.Forwarding:
    t = _Table(ctx, data, key)
    values: dict[str, Any] = {}
    proxies = t.str_list("trusted_proxies")
    for i, p in enumerate(proxies):
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            ctx.error(f"{key}.trusted_proxies[{i}]", f"{p!r} is not an IP address or network",
                      'write e.g. "10.0.0.0/8" or "192.0.2.7"')
    if proxies:
        values["trusted_proxies"] = proxies
    for name in ("tls_headers", "client_cert_header", "preserve_host"):
        v = t.get(name, bool)
        if v is not None:
            values[name] = v
    t.finish()
    return model.Forwarding(**values)


_VHOST_KEYS = ("listen", "tls", "server_name", "server_aliases", "backends", "forwarding",
               "redirect_to_https", "hsts_max_age_seconds", "plain_http_answer",
               "ssl_nossl_suffix_redirects")


def _read_vhost(ctx: _Ctx, data: Any, index: int, tls_defaults: model.TLSSettings,
                tls_defaults_given: bool) -> model.VHost | None:
    key = f"vhost[{index}]"
    t = _Table(ctx, data, key)
    listen_text = t.get("listen", str)
    listen = None
    if listen_text is None:
        if not t.has("listen"):
            ctx.error(f"{key}.listen", "missing: every vhost needs a listen address",
                      'add listen = "IP:PORT" (or "*:PORT")')
    else:
        try:
            listen = parse_address(listen_text)
        except ValueError as exc:
            ctx.error(f"{key}.listen", str(exc), 'write IP:PORT, e.g. "127.0.0.1:8443" or "*:443"')

    tls_raw = t.raw("tls")
    tls: model.TLSSettings | None = None
    if tls_raw is _MISSING or tls_raw is False:
        tls = None
    elif tls_raw is True:
        tls = tls_defaults
    elif isinstance(tls_raw, dict):
        tt = _Table(ctx, tls_raw, f"{key}.tls")
        if tt.has("random_seed"):
            tt.raw("random_seed")
            ctx.error(f"{key}.tls.random_seed", "random_seed is global (SSLRandomSeed is server-wide)",
                      "move it to [server]")
        tls = _read_tls(ctx, tt, tls_defaults)
        tt.finish(TLS_KEYS)
    else:
        ctx.error(f"{key}.tls", f"must be true, false or a table, not {tls_raw!r}",
                  "write tls = true to use [tls], or [vhost.tls] with overrides")

    if tls is not None and not tls.certs:
        ctx.error(f"{key}.tls.certificate", "this TLS vhost has no certificate",
                  "set certificate and key in [tls] or in this vhost's [vhost.tls]")

    default_name = listen.host if listen is not None and not listen.is_wildcard else "localhost"
    server_name = t.get("server_name", str, default_name)
    aliases = t.str_list("server_aliases")
    backends: list[model.Backend] = []
    backend_texts = t.str_list("backends")
    for i, b in enumerate(backend_texts):
        try:
            backends.append(parse_backend(b))
        except ValueError as exc:
            ctx.error(f"{key}.backends[{i}]", str(exc), 'write e.g. "http://127.0.0.1:8081"')
    redirect = t.get("redirect_to_https", str)
    if not t.has("backends") and redirect is None:
        ctx.error(f"{key}.backends", "missing: a vhost needs at least one backend",
                  'add backends = ["http://127.0.0.1:8081"] (or redirect_to_https on a plain vhost)')
    elif t.has("backends") and not backend_texts:
        ctx.error(f"{key}.backends", "is empty", 'list at least one, e.g. ["http://127.0.0.1:8081"]')
    forwarding = _read_forwarding(ctx, t.raw("forwarding"), f"{key}.forwarding") \
        if t.has("forwarding") else model.Forwarding()
    values: dict[str, Any] = {}
    if redirect is not None:
        if "://" in redirect or "/" in redirect or not redirect.strip():
            ctx.error(f"{key}.redirect_to_https", f"{redirect!r} is not a host name with an optional port",
                      'write the TLS vhost\'s name and port, e.g. "www.example.test" or "www.example.test:8443"')
        if tls is not None:
            ctx.error(f"{key}.redirect_to_https", "only a plain-HTTP vhost can redirect to HTTPS",
                      "remove it from this TLS vhost")
        values["redirect_to_https"] = redirect
    hsts = t.get("hsts_max_age_seconds", int, None, _non_negative)
    if hsts is not None:
        if tls is None:
            ctx.error(f"{key}.hsts_max_age_seconds", "HSTS is sent over HTTPS only (RFC 6797 8.1)",
                      "move it to the TLS vhost")
        values["hsts_max_age_seconds"] = hsts
    if t.has("plain_http_answer"):
        values["plain_http_answer"] = t.choice("plain_http_answer", PLAIN_HTTP_ANSWER, "400")
        if tls is None:
            ctx.error(f"{key}.plain_http_answer", "is the answer to plain HTTP on a TLS port; this vhost "
                                                  "is plain HTTP", "remove it, or move it to the TLS vhost")
    v = t.get("ssl_nossl_suffix_redirects", bool)
    if v is not None:
        values["ssl_nossl_suffix_redirects"] = v
    t.finish(_VHOST_KEYS)
    if listen is None:
        return None
    return model.VHost(index=index, server_name=server_name, listen=listen, tls=tls,
                       backends=tuple(backends), server_aliases=aliases, forwarding=forwarding,
                       **values)

def _check_vhost_table(ctx: _Ctx, vhosts: list[model.VHost]) -> None:
    from .vhosts import VHostTable, VHostConflict

    try:
        VHostTable(vhosts)
    except VHostConflict as exc:
        for problem in exc.problems:
            ctx.error(problem.where, problem.message, problem.fix)
