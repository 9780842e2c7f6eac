"""The global tables: `[server]`, `[admin]`, `[timeouts]`, `[limits]`.

`[server]`: error_log, access_log, ssl_request_log, pid_file (paths), log_level, log_stderr,
allow_root, workers, user, group, shutdown_grace_seconds, session_ticket_rotation_seconds,
random_seed (SSLRandomSeed: ``"startup|connect builtin|file:/path|exec:/path [BYTES]"``).
`[admin]`: ``listen = "127.0.0.1:9180"``. `[timeouts]`, `[limits]`: every field of
`model.Timeouts`/`model.Limits`, a positive number. Example::

    [server]
    workers = 0                       # one per CPU
    random_seed = ["startup file:/dev/urandom 512", "connect builtin"]
    [admin]
    listen = "127.0.0.1:9180"
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import model
from .config_table import _Ctx, _non_negative, _positive, _replace, _Table
from .config_values import _resolve, parse_address

LOG_LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")


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
