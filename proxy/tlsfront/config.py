"""Load a TOML configuration into `model.Config`, reporting every problem at once.

The schema (documented key by key, with mod_ssl's directive names, in
`conf/tlsfront.toml`)::

    [server]   logs, log level, pid file, workers, user/group, random_seed
    [admin]    listen = "127.0.0.1:9180"
    [tls]      defaults every TLS vhost inherits (certificate, key, chain, protocols,
               ciphers, session cache, client certificates, passphrase_dialog...)
    [timeouts] [limits]
    [[vhost]]  listen = "IP:PORT" | "*:PORT", tls = true | false | { ...overrides... },
               server_name, server_aliases, backends = ["http://host:port"], [vhost.forwarding]
    [[quirk]]  attribute, pattern, set/unset (SetEnvIf / BrowserMatch)

Errors name the file and the key path as a user would write it
(`conf/x.toml: vhost[2].tls.key`), quote the bad value and give the fix;
unknown keys get a "did you mean" when one is close. Relative file paths
resolve against the directory of the configuration file.

This module reads files only to check they exist and can be read; parsing
certificates and keys is `tlsctx.build_contexts()`'s job.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from . import model, protocols
from .config_lines import Lines
from .errors import Collector, explain_os_error

LOG_LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
VERIFY_CLIENT = ("none", "optional", "require", "optional_no_ca")
SESSION_CACHE = ("shared", "per-worker", "off")
PLAIN_HTTP_ANSWER = ("400", "redirect")
PASSPHRASE_KINDS = ("builtin", "exec", "file", "env")

_MISSING = object()


# --------------------------------------------------------------------------- helpers


class _Ctx:
    """Where we are: the file, the collector, the directory relative paths resolve against."""

    def __init__(self, path: Path, text: str = "") -> None:
        self.path = path
        self.base = path.parent
        self.c = Collector()
        self.lines = Lines(text)

    def where(self, key: str) -> str:
        return f"{self.path}: {key}" if key else str(self.path)

    def error(self, key: str, message: str, fix: str = "") -> None:
        self.c.error(self.where(key), message, fix, self.lines.line(key) if key else None)

    def warn(self, key: str, message: str, fix: str = "") -> None:
        self.c.warn(self.where(key), message, fix, self.lines.line(key) if key else None)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


class _Table:
    """A TOML table being read: typed getters that report problems and track unknown keys."""

    def __init__(self, ctx: _Ctx, data: Any, key: str) -> None:
        self.ctx = ctx
        self.key = key
        self.used: set[str] = set()
        if not isinstance(data, dict):
            ctx.error(key, f"must be a table, not {_type_name(data)} ({data!r})",
                      f"write [{key}] with keys below it")
            data = {}
        self.data = data

    def sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name, _MISSING)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None,
            check: Callable[[Any], str | None] | None = None, fix: str = "") -> Any:
        value = self.raw(name)
        if value is _MISSING:
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            want = " or ".join(_type_name(k()) for k in kinds)
            self.ctx.error(self.sub(name), f"must be {want}, not {_type_name(value)} ({value!r})", fix)
            return default
        if check is not None:
            message = check(value)
            if message:
                self.ctx.error(self.sub(name), message, fix)
                return default
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.ctx.error(self.sub(name), f"{value!r} is not one of {', '.join(choices)}{hint}",
                           f"set {name} to one of: {', '.join(choices)}")
            return default
        return value

    def str_list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.ctx.error(self.sub(name), f"must be a list of strings, not {value!r}",
                           f'write {name} = ["...", "..."]')
            return default
        return tuple(value)

    def finish(self, known: tuple[str, ...] | list[str] | set[str] | None = None) -> None:
        """Report keys nobody asked for; `known` adds names accepted elsewhere."""
        allowed = set(self.used) | set(known or ())
        for name in self.data:
            if name in allowed:
                continue
            close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
            if close:
                self.ctx.error(self.sub(name), f"unknown key {name!r} (did you mean {close[0]!r}?)",
                               f"rename it to {close[0]!r} or remove it")
            else:
                self.ctx.error(self.sub(name), f"unknown key {name!r}",
                               f"remove it; known keys here: {', '.join(sorted(allowed))}")


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value!r}"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value!r}"


# --------------------------------------------------------------------------- addresses, URLs, files


def parse_address(text: str) -> model.Address:
    """`IP:PORT`, `*:PORT` or `[IPv6]:PORT` -> Address; ValueError with a readable reason."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"{text!r} is not IP:PORT (a port is required)")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [IPv6]:PORT")
    else:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:443")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number from 1 to 65535")
    if host != model.WILDCARD:
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address (host names are not "
                             "accepted: the address decides the vhost)") from None
    return model.Address(host, int(port_text))


def parse_backend(text: str) -> model.Backend:
    """`http://host[:port]` -> Backend; ValueError otherwise."""
    parts = urlsplit(text)
    if parts.scheme != "http":
        raise ValueError(f"{text!r}: only http:// backends are supported (scheme {parts.scheme!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r}: a backend is http://host:port, without a path, query or user")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"{text!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{text!r}: no host")
    return model.Backend(url=text, host=parts.hostname, port=port)


def _resolve(ctx: _Ctx, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    # Absolute: workers may chdir, and an exec: program given as "pp" must not be looked up in
    # $PATH. abspath also normalizes "conf/../.state/x" to ".../.state/x" for messages.
    return Path(os.path.abspath(p if p.is_absolute() else (ctx.base / p)))


def _check_readable(ctx: _Ctx, key: str, path: Path, *, what: str) -> bool:
    """Report a missing/unreadable file (naming the directory without x bit); True when fine."""
    try:
        if path.exists() and not path.is_file():
            # a directory, a FIFO (open() would block), a device...
            ctx.error(key, f"{path} is not a regular file", f"name the {what} file itself")
            return False
        with open(path, "rb"):
            pass
    except OSError as exc:
        message, fix = explain_os_error(path, exc, purpose=f"read the {what}")
        ctx.error(key, message, fix)
        return False
    return True


def _check_key_mode(ctx: _Ctx, key: str, path: Path) -> None:
    """The FAQ: `chmod 400 server.key`. Group/other-readable keys get a warning."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        ctx.warn(key, f"the private key {path} is accessible by group or others "
                      f"(mode {stat.filemode(mode)})",
                 f"chmod 400 {path} (readable by its owner only)")


# --------------------------------------------------------------------------- sections


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


def _replace(obj: Any, values: dict[str, Any]) -> Any:
    from dataclasses import replace

    return replace(obj, **values) if values else obj


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


def _read_random_seed(ctx: _Ctx, table: _Table) -> tuple[model.RandomSeed, ...]:
    """SSLRandomSeed: `startup|connect builtin|file:/path|exec:/path [bytes]`."""
    entries = table.str_list("random_seed")
    out = []
    fix = 'write e.g. "startup builtin", "startup file:/dev/urandom 512" or "connect builtin"'
    for i, text in enumerate(entries):
        key = table.sub(f"random_seed[{i}]")
        parts = text.split()
        if len(parts) not in (2, 3) or parts[0] not in ("startup", "connect"):
            ctx.error(key, f"{text!r} is not 'startup|connect SOURCE [BYTES]'", fix)
            continue
        context, source = parts[0], parts[1]
        count = None
        if len(parts) == 3:
            if not parts[2].isdigit() or int(parts[2]) == 0:
                ctx.error(key, f"{text!r}: the byte count {parts[2]!r} is not a positive integer", fix)
                continue
            count = int(parts[2])
        kind, sep, arg = source.partition(":")
        if kind == "builtin" and not sep:
            pass
        elif kind in ("file", "exec") and arg:
            path = _resolve(ctx, arg)
            source = f"{kind}:{path}"
            if kind == "file":
                if not path.exists():
                    ctx.error(key, f"{text!r}: {path} does not exist", "use file:/dev/urandom")
                elif path == Path("/dev/random"):
                    ctx.warn(key, f"{text!r}: reading /dev/random may block start-up until the kernel "
                                  "has gathered entropy (the FAQ's 'server hangs at start-up')",
                             "use file:/dev/urandom")
                elif count is None and not path.is_file():
                    ctx.error(key, f"{text!r}: a device needs a byte count, or tlsfront would read "
                                   "it forever", f"add a count: \"{context} file:{path} 512\"")
            elif not os.access(path, os.X_OK):
                ctx.error(key, f"{text!r}: {path} does not exist or is not executable",
                          f"chmod +x {path}, or correct the path")
        elif kind == "egd":
            ctx.error(key, f"{text!r}: EGD sockets are not supported by the OpenSSL in use",
                      "use builtin or file:/dev/urandom")
            continue
        else:
            ctx.error(key, f"{text!r}: unknown source {source!r}", fix)
            continue
        out.append(model.RandomSeed(context, source, count))
    return tuple(out)


def _read_server(ctx: _Ctx, data: Any) -> model.ServerSettings:
    t = _Table(ctx, data, "server")
    d = model.ServerSettings()
    values: dict[str, Any] = {}
    for name in ("error_log", "access_log", "ssl_request_log", "pid_file"):
        v = t.get(name, str)
        if v is not None:
            values[name] = _resolve(ctx, v)
    if t.has("log_level"):
        values["log_level"] = t.choice("log_level", LOG_LEVELS, d.log_level)
    for name in ("log_stderr", "allow_root"):
        v = t.get(name, bool)
        if v is not None:
            values[name] = v
    v = t.get("workers", int, None, _non_negative, "0 means one worker per CPU")
    if v is not None:
        values["workers"] = v
    for name in ("user", "group"):
        v = t.get(name, str)
        if v is not None:
            values[name] = v
    v = t.get("shutdown_grace_seconds", float, None, _non_negative)
    if v is not None:
        values["shutdown_grace_seconds"] = v
    v = t.get("session_ticket_rotation_seconds", float, None, _non_negative, "0 means only at reload")
    if v is not None:
        values["session_ticket_rotation_seconds"] = v
    values["random_seed"] = _read_random_seed(ctx, t)
    t.finish([f.name for f in fields(model.ServerSettings)])
    if values.get("user") is not None:
        try:
            import pwd

            pwd.getpwnam(values["user"])
        except KeyError:
            ctx.error("server.user", f"no such user {values['user']!r}", "create the user or correct the name")
    if values.get("group") is not None:
        try:
            import grp

            grp.getgrnam(values["group"])
        except KeyError:
            ctx.error("server.group", f"no such group {values['group']!r}", "create the group or correct the name")
    return _replace(d, values)


def _read_admin(ctx: _Ctx, data: Any) -> model.AdminSettings:
    t = _Table(ctx, data, "admin")
    listen = t.get("listen", str)
    t.finish()
    if listen is None:
        return model.AdminSettings()
    try:
        return model.AdminSettings(listen=parse_address(listen))
    except ValueError as exc:
        ctx.error("admin.listen", str(exc), 'write IP:PORT, e.g. "127.0.0.1:9180"')
        return model.AdminSettings()


def _read_dataclass_table(ctx: _Ctx, data: Any, key: str, cls: type) -> Any:
    """[timeouts] and [limits]: every field a positive number of the field's type."""
    t = _Table(ctx, data, key)
    values = {}
    for f in fields(cls):
        kind = float if f.type in ("float", float) else int
        v = t.get(f.name, kind, None, _positive)
        if v is not None:
            values[f.name] = v
    t.finish()
    return cls(**values)


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


def _read_quirk(ctx: _Ctx, data: Any, index: int) -> model.Quirk | None:
    key = f"quirk[{index}]"
    t = _Table(ctx, data, key)
    attribute = t.get("attribute", str)
    pattern = t.get("pattern", str)
    ignore_case = t.get("ignore_case", bool, False)
    negate = t.get("negate", bool, False)
    sets = t.str_list("set")
    unsets = t.str_list("unset")
    t.finish()
    ok = True
    for name, value in (("attribute", attribute), ("pattern", pattern)):
        if value is None and not t.has(name):
            ctx.error(f"{key}.{name}", "missing", 'e.g. attribute = "User-Agent", pattern = ".*MSIE.*"')
            ok = False
    if pattern is not None:
        try:
            re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            ctx.error(f"{key}.pattern", f"{pattern!r} is not a regular expression: {exc}",
                      "fix the expression (Python re syntax, close to PCRE)")
            ok = False
    from .quirks import NAMES as QUIRK_NAMES

    for name, values in (("set", sets), ("unset", unsets)):
        for i, value in enumerate(values):
            if value not in QUIRK_NAMES:
                close = difflib.get_close_matches(value, QUIRK_NAMES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                ctx.error(f"{key}.{name}[{i}]", f"unknown quirk {value!r}{hint}",
                          f"use {', '.join(QUIRK_NAMES)}")
                ok = False
    if not sets and not unsets:
        ctx.error(f"{key}.set", "the rule sets nothing",
                  'e.g. set = ["nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0"]')
        ok = False
    if not ok or attribute is None or pattern is None:
        return None
    return model.Quirk(attribute=attribute, pattern=pattern, ignore_case=ignore_case,
                       negate=negate, set=sets, unset=unsets)


def _check_vhost_table(ctx: _Ctx, vhosts: list[model.VHost]) -> None:
    from .vhosts import VHostTable, VHostConflict

    try:
        VHostTable(vhosts)
    except VHostConflict as exc:
        for problem in exc.problems:
            ctx.error(problem.where, problem.message, problem.fix)


# --------------------------------------------------------------------------- entry point


def load(path: str | os.PathLike[str]) -> model.Config:
    """Read and validate the configuration at `path`; raise ConfigErrors listing every problem."""
    cfg, collector = load_partial(path)
    collector.raise_if_any()
    assert cfg is not None
    return cfg


def load_partial(path: str | os.PathLike[str]) -> tuple[model.Config | None, Collector]:
    """What `tlsfront check` needs: the Config built from everything that was valid (None when
    the file cannot be read or parsed at all) and the problems found, without raising, so the
    certificates of the valid vhosts can be checked too and every problem shown at once.
    Only `load()` may be used to serve: a partial Config lacks the vhosts that had problems."""
    path = Path(path)
    ctx = _Ctx(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        message, fix = explain_os_error(path, exc, purpose="read the configuration")
        ctx.error("", message, fix)
        return None, ctx.c
    try:
        text = raw.decode("utf-8")
        ctx.lines = Lines(text)
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        ctx.error("", f"not UTF-8 text: {exc}", "save the file as UTF-8")
        return None, ctx.c
    except tomllib.TOMLDecodeError as exc:
        ctx.error("", f"TOML syntax error: {exc}", "fix the syntax at that line (https://toml.io)")
        return None, ctx.c
    return _from_data(ctx, data), ctx.c


def from_data(data: Any, path: str | os.PathLike[str]) -> tuple[model.Config, Collector]:
    """The loader on already-parsed TOML data (`path` names the file in messages and is the
    base of relative paths). For tests and programs that build configurations."""
    ctx = _Ctx(Path(path))
    return _from_data(ctx, data), ctx.c


def _from_data(ctx: _Ctx, data: Any) -> model.Config:
    path = ctx.path
    top = _Table(ctx, data, "")
    server = _read_server(ctx, top.raw("server")) if top.has("server") else model.ServerSettings()
    admin = _read_admin(ctx, top.raw("admin")) if top.has("admin") else model.AdminSettings()
    tls_defaults = model.TLSSettings()
    if top.has("tls"):
        tt = _Table(ctx, top.raw("tls"), "tls")
        if tt.has("random_seed"):
            tt.raw("random_seed")
            ctx.error("tls.random_seed", "random_seed belongs in [server] (SSLRandomSeed is server-wide)",
                      "move it to [server]")
        tls_defaults = _read_tls(ctx, tt, tls_defaults)
        tt.finish(TLS_KEYS)
    timeouts = _read_dataclass_table(ctx, top.raw("timeouts"), "timeouts", model.Timeouts) \
        if top.has("timeouts") else model.Timeouts()
    limits = _read_dataclass_table(ctx, top.raw("limits"), "limits", model.Limits) \
        if top.has("limits") else model.Limits()

    vhosts: list[model.VHost] = []
    raw_vhosts = top.raw("vhost")
    if raw_vhosts is _MISSING:
        ctx.error("vhost", "no [[vhost]]: nothing to serve", 'add a [[vhost]] with listen and backends')
    elif not isinstance(raw_vhosts, list):
        ctx.error("vhost", "must be an array of tables: write [[vhost]], not [vhost]", "write [[vhost]]")
    else:
        for i, item in enumerate(raw_vhosts):
            v = _read_vhost(ctx, item, i, tls_defaults, top.has("tls"))
            if v is not None:
                vhosts.append(v)
    quirks: list[model.Quirk] = []
    raw_quirks = top.raw("quirk")
    if raw_quirks is not _MISSING:
        if not isinstance(raw_quirks, list):
            ctx.error("quirk", "must be an array of tables: write [[quirk]]", "write [[quirk]]")
        else:
            for i, item in enumerate(raw_quirks):
                q = _read_quirk(ctx, item, i)
                if q is not None:
                    quirks.append(q)
    top.finish(("server", "admin", "tls", "timeouts", "limits", "vhost", "quirk"))
    _check_vhost_table(ctx, vhosts)
    if admin.listen is not None:
        for v in vhosts:
            a, b = v.listen, admin.listen
            # Same port and overlapping hosts: one bind() would fail (a wildcard covers them all).
            if a.port == b.port and (a.host == b.host or a.is_wildcard or b.is_wildcard):
                ctx.error("admin.listen", f"{admin.listen} overlaps vhost[{v.index}]'s listen address {v.listen}",
                          "give the admin endpoint its own port")
    return model.Config(
        path=path, server=server, admin=admin, tls_defaults=tls_defaults, vhosts=tuple(vhosts),
        quirks=tuple(quirks), timeouts=timeouts, limits=limits,
        warnings=tuple(str(w) for w in ctx.c.warnings),
    )


def check_runtime_paths(config: model.Config) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the log and pid files: can tlsfront create/append to them?

    Used by `tlsfront check`: a missing directory is an error (`serve` does not create
    log directories), as is a directory or file this user cannot write.
    """
    errors: list[str] = []
    warnings: list[str] = []
    s = config.server
    for name in ("error_log", "access_log", "ssl_request_log", "pid_file"):
        path: Path | None = getattr(s, name)
        if path is None:
            continue
        where = f"{config.path}: server.{name}"
        if path.exists():
            if path.is_dir():
                errors.append(f"{where}: {path} is a directory\n    fix: name a file")
            elif not os.access(path, os.W_OK):
                msg, fix = explain_os_error(path, PermissionError(13, "Permission denied"), purpose="write")
                errors.append(f"{where}: {msg}\n    fix: {fix}")
            continue
        parent = path.parent
        if parent.is_dir():
            if not os.access(parent, os.W_OK | os.X_OK):
                errors.append(f"{where}: cannot create {path}: the directory {parent} is not writable "
                              f"by this user\n    fix: chown or chmod {parent}, or choose another path")
            continue
        # logfiles.Logs never creates directories (a typo must not scatter logs): an error,
        # as `serve` would fail on it.
        errors.append(f"{where}: the directory {parent} does not exist (tlsfront does not create "
                      f"log directories)\n    fix: mkdir -p {parent}, or correct the path")
    return errors, warnings
