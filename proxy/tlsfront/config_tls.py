"""The `[tls]` table and a vhost's `tls = { ... }` overrides -> `model.TLSSettings`.

Keys (mod_ssl's directive in conf/tlsfront.toml beside each): protocols,
insecure_legacy_protocols, ciphers, ciphersuites, honor_cipher_order, groups,
session_cache(_size), session_timeout_seconds, session_tickets, passphrase_dialog,
certificate/key/chain (strings, or lists of equal length for an RSA and an ECDSA pair),
and the client-certificate keys verify_client, verify_depth, ca_certificate_file,
ca_certificate_path, crl_file. Example::

    [tls]
    certificate = ["rsa.crt", "ec.crt"]
    key = ["rsa.key", "ec.key"]
    protocols = "TLSv1.2+"
    passphrase_dialog = "exec:/usr/local/sbin/tlsfront-pass"

Each key of a vhost's table overrides the inherited `[tls]` value; certificates replace
the inherited set as a group.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from . import model, protocols
from .config_table import _MISSING, _Ctx, _non_negative, _positive, _replace, _Table
from .config_values import _check_key_mode, _check_readable, _resolve

VERIFY_CLIENT = ("none", "optional", "require", "optional_no_ca")
SESSION_CACHE = ("shared", "per-worker", "off")
PASSPHRASE_KINDS = ("builtin", "exec", "file", "env")


_TLS_SCALARS: dict[str, tuple[type | tuple[type, ...], Callable[[Any], str | None] | None]] = {
    "protocols": (str, None),
    "insecure_legacy_protocols": (bool, None),
    "ciphers": (str, None),
    "ciphersuites": (str, None),
    "honor_cipher_order": (bool, None),
    "groups": (str, None),
    "session_cache_size": (int, _positive),
    "session_timeout_seconds": (float, _positive),
    "session_tickets": (bool, None),
    "passphrase_dialog": (str, None),
}
_TLS_FILES = ("certificate", "key", "chain")
_CLIENT_KEYS = ("verify_client", "verify_depth", "ca_certificate_file", "ca_certificate_path", "crl_file")
TLS_KEYS = tuple(_TLS_SCALARS) + _TLS_FILES + ("session_cache",) + _CLIENT_KEYS


def _check_passphrase_dialog(value: str) -> str | None:
    kind, sep, arg = value.partition(":")
    if kind == "builtin" and not sep:
        return None
    if kind in ("exec", "file", "env") and arg:
        return None
    return (f"{value!r} is not a pass-phrase dialog: use builtin, exec:/path/to/program, "
            "file:/path/to/passphrase-file or env:VARIABLE")


def _read_tls(ctx: _Ctx, table: _Table, base: model.TLSSettings) -> model.TLSSettings:
    """Read TLS keys from `table`, each overriding `base` (the `[tls]` defaults)."""
    values: dict[str, Any] = {}
    for name, (kind, check) in _TLS_SCALARS.items():
        value = table.get(name, kind, _MISSING, check)
        if value is not _MISSING:
            values[name] = value
    if "passphrase_dialog" in values:
        message = _check_passphrase_dialog(values["passphrase_dialog"])
        if message:
            ctx.error(table.sub("passphrase_dialog"), message,
                      'e.g. passphrase_dialog = "exec:/usr/local/sbin/tlsfront-pass"')
            del values["passphrase_dialog"]
        else:
            kind, _, arg = values["passphrase_dialog"].partition(":")
            if kind in ("exec", "file"):
                path = _resolve(ctx, arg)
                values["passphrase_dialog"] = f"{kind}:{path}"
                if kind == "exec" and not os.access(path, os.X_OK):
                    ctx.error(table.sub("passphrase_dialog"),
                              f"the pass-phrase program {path} does not exist or is not executable",
                              f"chmod +x {path}, or correct the path")
                if kind == "file":
                    _check_readable(ctx, table.sub("passphrase_dialog"), path, what="pass-phrase file")
    if table.has("session_cache"):
        values["session_cache"] = table.choice("session_cache", SESSION_CACHE, base.session_cache)

    # Certificates: `certificate` and `key` are strings or lists of equal length (an RSA and
    # an ECDSA pair, as mod_ssl allows SSLCertificateFile twice). They replace the inherited
    # set as a group, chain included.
    if table.has("certificate") or table.has("key") or table.has("chain"):
        values["certs"] = _read_certs(ctx, table, base)

    client = _read_client(ctx, table, base.client)
    if client is not base.client:
        values["client"] = client
    tls = _replace(base, values)
    _check_protocols(ctx, table, tls)
    return tls


def _check_protocols(ctx: _Ctx, table: _Table, tls: model.TLSSettings) -> None:
    if not table.has("protocols") and not table.has("insecure_legacy_protocols"):
        return
    key = table.sub("protocols")
    try:
        from OpenSSL import SSL  # not the reactor: safe before the fork

        rng = protocols.parse(tls.protocols, openssl_name=SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode())
    except protocols.ProtocolError as exc:
        ctx.error(key, str(exc), exc.fix)
        return
    if rng.legacy and not tls.insecure_legacy_protocols:
        ctx.error(key, f"protocols {tls.protocols!r} enables {', '.join(v for v in rng.versions if v in protocols.LEGACY)}, "
                       "which are insecure (RFC 8996 deprecates TLS 1.0 and 1.1)",
                  "remove them, or, for legacy clients only, set insecure_legacy_protocols = true "
                  "in the same table (it also lowers OpenSSL's security level to 0)")


def _read_certs(ctx: _Ctx, table: _Table, base: model.TLSSettings) -> tuple[model.CertKey, ...]:
    certs = table.str_list("certificate")
    keys = table.str_list("key")
    chain = table.get("chain", str)
    if not certs and not keys:
        if chain is not None and base.certs:  # only the chain changes
            return tuple(model.CertKey(c.cert_file, c.key_file, _resolve(ctx, chain)) for c in base.certs)
        if chain is not None:
            ctx.error(table.sub("chain"), "a chain without a certificate",
                      "set certificate and key beside chain")
        return base.certs
    if len(certs) != len(keys):
        ctx.error(table.sub("key"),
                  f"{len(certs)} certificate(s) but {len(keys)} key(s): each certificate needs its key",
                  'list them in the same order: certificate = ["rsa.crt", "ec.crt"], key = ["rsa.key", "ec.key"]')
        return base.certs
    chain_path = _resolve(ctx, chain) if chain is not None else None
    out = []
    for i, (c, k) in enumerate(zip(certs, keys)):
        suffix = f"[{i}]" if len(certs) > 1 else ""
        cp, kp = _resolve(ctx, c), _resolve(ctx, k)
        _check_readable(ctx, table.sub("certificate") + suffix, cp, what="certificate")
        if _check_readable(ctx, table.sub("key") + suffix, kp, what="private key"):
            _check_key_mode(ctx, table.sub("key") + suffix, kp)
        out.append(model.CertKey(cp, kp, chain_path))
    if chain_path is not None:
        _check_readable(ctx, table.sub("chain"), chain_path, what="certificate chain")
    return tuple(out)


def _read_client(ctx: _Ctx, table: _Table, base: model.ClientAuth) -> model.ClientAuth:
    values: dict[str, Any] = {}
    if table.has("verify_client"):
        values["verify"] = table.choice("verify_client", VERIFY_CLIENT, base.verify)
    depth = table.get("verify_depth", int, None, _non_negative)
    if depth is not None:
        values["depth"] = depth
    for name, field_name, what in (("ca_certificate_file", "ca_file", "CA certificate file"),
                                   ("crl_file", "crl_file", "CRL file")):
        value = table.get(name, str)
        if value is not None:
            path = _resolve(ctx, value)
            _check_readable(ctx, table.sub(name), path, what=what)
            values[field_name] = path
    value = table.get("ca_certificate_path", str)
    if value is not None:
        path = _resolve(ctx, value)
        if not path.is_dir():
            ctx.error(table.sub("ca_certificate_path"), f"{path} is not a directory",
                      "name a directory of CA certificates with HASH.0 links (tlsfront cert rehash DIR)")
        values["ca_path"] = path
    client = _replace(base, values)
    if client.verify != "none" and client.ca_file is None and client.ca_path is None \
            and client.verify != "optional_no_ca" and values:
        ctx.error(table.sub("verify_client"),
                  f"verify_client = {client.verify!r} needs the CAs that issue client certificates",
                  "set ca_certificate_file (a PEM bundle) or ca_certificate_path (a hashed directory)")
    return client
