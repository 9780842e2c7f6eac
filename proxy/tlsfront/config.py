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

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from . import model
from .config_lines import Lines
# The parts: config_table.py (reading a table, collecting problems), config_values.py
# (addresses, backends, paths), config_server.py, config_tls.py, config_vhost.py,
# config_quirk.py. Their public names stay importable from here.
from .config_quirk import _read_quirk
from .config_server import LOG_LEVELS, _read_admin, _read_dataclass_table, _read_server  # noqa: F401
from .config_table import _MISSING, _Ctx, _Table
from .config_tls import PASSPHRASE_KINDS, SESSION_CACHE, TLS_KEYS, VERIFY_CLIENT, _read_tls  # noqa: F401
from .config_values import parse_address, parse_backend  # noqa: F401
from .config_vhost import _VHOST_KEYS, PLAIN_HTTP_ANSWER, _check_vhost_table, _read_vhost  # noqa: F401
from .errors import Collector, explain_os_error


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
        line = raw.count(b"\n", 0, exc.start) + 1  # the line of the first bad byte, as editors count
        ctx.c.error(ctx.where(""), f"not UTF-8 text: {exc}", "save the file as UTF-8", line)
        return None, ctx.c
    except tomllib.TOMLDecodeError as exc:
        ctx.c.error(ctx.where(""), f"TOML syntax error: {exc}", "fix the syntax at that line (https://toml.io)",
                    _syntax_error_line(exc, text))
        return None, ctx.c
    return _from_data(ctx, data), ctx.c


def _syntax_error_line(exc: tomllib.TOMLDecodeError, text: str) -> int | None:
    """The line tomllib names in its message ("... (at line 3, column 7)"; the last line for "(at end of
    document)"): Python 3.11's TOMLDecodeError has no lineno attribute yet (3.14 adds it)."""
    m = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
    if m:
        return int(m.group(1))
    return text.count("\n") + 1 if str(exc).endswith("(at end of document)") else None


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
