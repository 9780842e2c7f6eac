"""Value parsers of the configuration: listen addresses, backend URLs, file paths.

- `parse_address("127.0.0.1:8443")`, `"*:443"`, `"[::1]:443"` -> `model.Address`; host
  names are refused (the address decides the vhost).
- `parse_backend("http://127.0.0.1:8081")` -> `model.Backend`; http:// only, no path.
- `_resolve(ctx, "certs/www.crt")`: an absolute path, relative to the configuration's
  directory; `_check_readable` and `_check_key_mode` report a file that cannot be read or
  a private key others can read (the FAQ's `chmod 400 server.key`).

The parsers raise ValueError with a readable reason; the callers turn it into a problem
naming the key and the fix.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from . import model
from .config_table import _Ctx
from .errors import explain_os_error


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
