"""Problems found in a configuration, and plain-language explanations of OS errors.

Every user-facing error of `tlsfront` is a `Problem`: *where* (the file and the
key path, `conf/x.toml: vhost[2].tls.key`), *what* went wrong (with the bad
value) and the *fix*. The loader collects them all and raises one
`ConfigErrors` holding the list, as `apachectl configtest` would report every
problem of a file rather than stop at the first.

Example::

    >>> str(ConfigErrors([Problem("conf/x.toml: vhost[0].listen",
    ...                           "'1.2.3:443' is not an IP address",
    ...                           "write IP:PORT, e.g. 127.0.0.1:443 or *:443")]))
    "1 problem in the configuration:\\n\\nconf/x.toml: vhost[0].listen: '1.2.3:443' ..."

The second half of the module turns `OSError`s into the paragraphs the mod_ssl
FAQ would have given: "Permission denied" names the parent directory that lacks
the x bit (the FAQ's SSLMutex answer), "Address already in use" says which
address and how to find the process holding it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is, and how to fix it."""

    where: str  # "conf/x.toml: vhost[2].tls.key", or a file path, or "command line"
    message: str  # what is wrong, with the offending value quoted
    fix: str = ""  # what to do about it; may be empty when obvious
    line: int | None = None  # line of the key in the file, when known (config_lines)

    def __str__(self) -> str:
        where = f"{self.where} (line {self.line})" if self.line else self.where
        text = f"{where}: {self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class ConfigErrors(Exception):
    """Every problem found while loading a configuration (never just the first).

    `str()` is the text shown to the user; `problems` the list for programs.
    `warnings` may carry non-fatal problems found on the way, so they are not lost.
    """

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the configuration:"
        return head + "\n\n" + "\n\n".join(str(p) for p in in_file_order(self.problems))

    def __str__(self) -> str:
        return self.render()


def in_file_order(problems: list[Problem]) -> list[Problem]:
    """Problems with a line first, by line; the others after, in the order found (stable)."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


class Collector:
    """Gathers problems and warnings while loading; raises them all at the end."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, where: str, message: str, fix: str = "", line: int | None = None) -> None:
        self.problems.append(Problem(where, message, fix, line))

    def warn(self, where: str, message: str, fix: str = "", line: int | None = None) -> None:
        self.warnings.append(Problem(where, message, fix, line))

    def extend(self, other: ConfigErrors) -> None:
        self.problems.extend(other.problems)
        self.warnings.extend(other.warnings)

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigErrors(self.problems, self.warnings)


# --------------------------------------------------------------------------- OS errors


def _ids() -> str:
    """Who we are, in the words an operator checks with `id`."""
    try:
        import grp
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        return f"user {user} (uid {os.geteuid()}), group {group} (gid {os.getegid()})"
    except (ImportError, KeyError):  # pragma: no cover - exotic systems
        return f"uid {os.geteuid()}, gid {os.getegid()}"


def blocking_directory(path: Path) -> Path | None:
    """The first parent directory of `path` that this process cannot search (no x bit for us).

    The mod_ssl FAQ: "Permission denied" on a file is usually caused by overly
    restrictive permissions on the *parent* directories: each needs the x bit
    for the user the server runs as.
    """
    path = Path(os.path.abspath(path))
    for parent in reversed(path.parents):  # "/" first, then deeper
        if parent == path:
            continue
        if parent.exists() and not os.access(parent, os.X_OK):
            return parent
        if not parent.exists():
            return None
    return None


def explain_os_error(path: Path | str, exc: OSError, *, purpose: str = "open") -> tuple[str, str]:
    """(message, fix) for an OSError met while trying to `purpose` (open, read, write) `path`."""
    path = Path(path)
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        parent = path.parent
        if not parent.exists():
            fix = ("correct the path, or put the file there" if purpose.startswith("read")
                   else f"create {parent} (mkdir -p {parent}) or correct the path")
            return (f"cannot {purpose} {path}: the directory {parent} does not exist", fix)
        return (f"cannot {purpose} {path}: no such file", "correct the path or create the file")
    if exc.errno in (errno.EACCES, errno.EPERM):
        blocker = blocking_directory(path)
        if blocker is not None:
            return (
                f"cannot {purpose} {path}: permission denied, because the parent directory "
                f"{blocker} lacks the x (search) bit for {_ids()}",
                f"chmod a+x {blocker} (or o+x/g+x, at minimum for the user tlsfront runs as); "
                "every parent directory of the file needs it",
            )
        mode = ""
        try:
            st = path.stat()
            mode = f" (mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid})"
        except OSError:
            pass
        return (f"cannot {purpose} {path}: permission denied{mode} for {_ids()}",
                f"make {path} readable by that user (chown or chmod), or run tlsfront as its owner")
    if exc.errno == errno.EISDIR:
        return (f"cannot {purpose} {path}: it is a directory", "name a file, not a directory")
    return (f"cannot {purpose} {path}: {reason}", "")


def explain_bind_error(address: object, exc: OSError) -> str:
    """One paragraph for a failed bind()/listen() on `address` (an `Address` or "IP:PORT").

    The data path calls this when a listening socket cannot be opened.
    """
    err = getattr(exc, "errno", None)
    # Twisted's CannotListenError wraps the socket.error in .socketError
    inner = getattr(exc, "socketError", None)
    if err is None and isinstance(inner, OSError):
        err = inner.errno
    port = getattr(address, "port", None)
    if port is None and isinstance(address, str) and ":" in address:
        try:
            port = int(address.rsplit(":", 1)[1])
        except ValueError:
            port = None
    if err == errno.EADDRINUSE:
        return (f"cannot listen on {address}: address already in use: another process "
                f"(perhaps another tlsfront, Apache or nginx) is listening there. "
                f"Find it with `ss -ltnp 'sport = :{port}'`, stop it, or change `listen`.")
    if err in (errno.EACCES, errno.EPERM):
        if port is not None and port < 1024:
            return (f"cannot listen on {address}: permission denied: ports below 1024 need root or "
                    f"the CAP_NET_BIND_SERVICE capability. Start tlsfront as root (it can drop to "
                    f"`[server] user`), grant the capability (`setcap cap_net_bind_service=+ep` on "
                    f"the Python binary, or AmbientCapabilities= in the systemd unit), or use a port "
                    f"of 1024 or above.")
        return f"cannot listen on {address}: permission denied ({_ids()})."
    if err == errno.EADDRNOTAVAIL:
        host = getattr(address, "host", address)
        return (f"cannot listen on {address}: {host} is not an address of this machine. "
                f"Use an address shown by `ip -brief address`, or `*` for all addresses.")
    text = (inner.strerror if isinstance(inner, OSError) else None) or getattr(exc, "strerror", None) or str(exc)
    return f"cannot listen on {address}: {text}."
