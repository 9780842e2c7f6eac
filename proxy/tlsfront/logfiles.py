"""The log files: open, filter by level, buffer, flush, reopen (SIGUSR1), survive fork.

`Logs` owns the three files named in `[server]` (`error_log`, `access_log`,
`ssl_request_log`, each optional) and the optional stderr copy of the error
log.  Lines come from `logformat` and go out like this:

- **Buffered, flushed promptly.** A line is appended to an in-memory list; the
  first line after a flush asks the injected `schedule` (``reactor.callLater``)
  for a flush at delay 0, i.e. on the next reactor turn, so one ``write()``
  carries every line of that turn.  `MAX_PENDING_BYTES` pending forces an
  immediate flush.  Without a scheduler (the master before the reactor runs,
  ``tlsfront check``) every line is written at once.  No fsync: like Apache.
- **Never interleaved.** Files are opened ``O_WRONLY|O_APPEND|O_CREAT`` (mode
  0640); each flush is one ``os.write`` of whole lines; with ``O_APPEND`` the
  kernel positions every write at the end atomically, so workers sharing a
  file (inherited descriptor or their own after a reopen) never split a line.
- **Fork-safe.** Pending lines are flushed just before ``fork()`` and dropped
  in the child (they belong to the parent), via ``os.register_at_fork``; a
  worker calls `Logs.set_scheduler(reactor.callLater)` once its reactor exists.
- **Reopen.** `Logs.reopen()` (the SIGUSR1 handler) flushes, closes and opens
  every path again, so logrotate's renamed files are released; the first line
  of each new error log is TLSF0008.
- **Errors are configuration errors.** `LogFileError` says which file, why, and
  the fix; a missing parent directory is *not* created (a typo in the path
  should not grow a tree), and "permission denied" names the directory that
  lacks the x (search) or w bit, as the mod_ssl FAQ's SSLMutex answer does.
  A failing ``write()`` later (disk full) never raises into the data path: the
  lines are dropped and counted in `LogFile.dropped_lines`.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlsfront.logformat import LEVEL_RANK, LEVELS, MESSAGES, ErrorLogFormatter, access_line, ssl_request_line

MAX_PENDING_BYTES = 64 * 1024
FILE_MODE = 0o640

Scheduler = Callable[[float, Callable[[], None]], Any]


class LogFileError(Exception):
    """A log file cannot be opened. str() is the one-paragraph message for the operator."""


def _explain_open_error(path: Path, exc: OSError, what: str) -> str:
    parent = path.parent
    if exc.errno == errno.ENOENT:
        if not parent.exists():
            missing = parent
            while not missing.parent.exists() and missing.parent != missing:
                missing = missing.parent
            first = f" (the first missing one is {missing})" if missing != parent else ""
            return (f"{what} {path}: the directory {parent} does not exist{first}. "
                    f"tlsfront does not create log directories: create it (mkdir -p {parent}) "
                    f"or fix the path in the configuration.")
        return f"{what} {path}: {exc.strerror}."
    if exc.errno in (errno.EACCES, errno.EPERM):
        # Walk from the root: the first directory we cannot search is the culprit.
        for d in reversed((parent, *parent.parents)):
            if d.exists() and not os.access(d, os.X_OK):
                return (f"{what} {path}: permission denied: the directory {d} lacks the x (search) "
                        f"permission for uid {os.geteuid()}. Fix: chmod o+x {d} (or a+x), or put "
                        f"the log somewhere this user can reach.")
        if path.exists() and not os.access(path, os.W_OK):
            return (f"{what} {path}: permission denied: the file is not writable by uid {os.geteuid()}. "
                    f"Fix: chown or chmod the file (tlsfront creates it with mode 0640).")
        if not path.exists() and not os.access(parent, os.W_OK):
            return (f"{what} {path}: permission denied: the directory {parent} is not writable by "
                    f"uid {os.geteuid()}, so the file cannot be created. Fix: create the file and "
                    f"chown it to this user, or make the directory writable.")
        return f"{what} {path}: permission denied ({exc.strerror})."
    if exc.errno == errno.EISDIR:
        return f"{what} {path}: is a directory; give a file name (e.g. {path / 'error.log'})."
    return f"{what} {path}: {exc.strerror or exc} (errno {exc.errno})."


def open_append(path: Path, what: str = "log file") -> int:
    """Open `path` for appending (created 0640). Raises `LogFileError` with the fix."""
    path = Path(path)
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise LogFileError(_explain_open_error(path, exc, what)) from None


def check_path(path: Path, what: str = "log file") -> str | None:
    """For ``tlsfront check``: the problem with opening `path`, or None. Creates the file
    if it is missing (as Apache's configtest does when it opens logs)."""
    try:
        os.close(open_append(path, what))
    except LogFileError as exc:
        return str(exc)
    return None


_live_files: "weakref.WeakSet[LogFile]" = weakref.WeakSet()


def _before_fork() -> None:
    for f in list(_live_files):
        f.flush()


def _after_fork_in_child() -> None:
    for f in list(_live_files):
        f._forget_pending()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


class LogFile:
    """One append-only log destination (a path, or an inherited fd such as stderr)."""

    def __init__(self, path: Path | None = None, fd: int | None = None, what: str = "log file",
                 schedule: Scheduler | None = None) -> None:
        if (path is None) == (fd is None):
            raise ValueError("give exactly one of path or fd")
        self.path = Path(path) if path is not None else None
        self.what = what
        self._owns_fd = fd is None
        self.fd = open_append(self.path, what) if self.path is not None else fd  # type: ignore[arg-type]
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._scheduled = False
        self._schedule = schedule
        self.dropped_lines = 0
        self.last_error: str | None = None
        _live_files.add(self)

    def set_scheduler(self, schedule: Scheduler | None) -> None:
        self.flush()
        self._schedule = schedule
        self._scheduled = False

    def write(self, line: str) -> None:
        """Queue one line (ending in "\\n"); flushed on the next reactor turn."""
        data = line.encode("ascii", "backslashreplace")
        if self._schedule is None:
            self._write(data, 1)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= MAX_PENDING_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._schedule(0, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        lines = len(self._pending)
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._write(data, lines)

    def _write(self, data: bytes, lines: int) -> None:
        if self.fd is None:
            self.dropped_lines += lines
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            # Disk full, EBADF after a bad reopen...: never raise into the data path.
            self.dropped_lines += lines
            self.last_error = f"{self.what} {self.path or self.fd}: write failed: {exc.strerror or exc}"

    def _forget_pending(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self._scheduled = False
        self._schedule = None  # the parent's reactor is not ours

    def reopen(self) -> None:
        """Flush, then open the path again (after logrotate renamed it). Raises LogFileError;
        the old descriptor stays in use if the new open fails."""
        self.flush()
        if self.path is None:
            return
        new_fd = open_append(self.path, self.what)
        old, self.fd = self.fd, new_fd
        if old is not None and self._owns_fd:
            os.close(old)

    def close(self) -> None:
        self.flush()
        if self.fd is not None and self._owns_fd:
            os.close(self.fd)
        self.fd = None
        _live_files.discard(self)


class Logs:
    """The process's logs: error (with level filter and stderr copy), access, ssl_request.

    Methods the data path calls:

    - ``error(key, client=None, **fields)``: an error-log event (`logformat.MESSAGES` key);
    - ``access(vhost, client_ip, request_line, status, bytes_out, referer, user_agent, quirks, when=None)``;
    - ``ssl_request(client_ip, protocol, cipher, request_line, bytes_body, handshake_seconds, resumed, when=None,
      vhost=None)`` (`vhost`: the vhost label, the line's last field);
    - ``enabled(key)``: cheap check before building expensive fields;
    - ``reopen()`` (SIGUSR1), ``flush()``, ``close()``, ``set_scheduler(reactor.callLater)``.

    Any of the three paths may be None (that log is off).  Opening happens in
    the constructor so configuration errors surface before the proxy starts.
    """

    def __init__(self, error_log: Path | None = None, access_log: Path | None = None,
                 ssl_request_log: Path | None = None, log_level: str = "info", log_stderr: bool = False,
                 schedule: Scheduler | None = None, clock: Callable[[], float] = time.time,
                 stderr_fd: int | None = None, pid: int | None = None) -> None:
        if log_level not in LEVEL_RANK:
            raise LogFileError(f"log_level {log_level!r} is not one of {', '.join(LEVELS)}.")
        self.clock = clock
        self.formatter = ErrorLogFormatter(pid=pid)
        rank = LEVEL_RANK[log_level]
        self._enabled = frozenset(k for k, m in MESSAGES.items() if LEVEL_RANK[m.level] <= rank)
        opened: list[LogFile] = []
        try:
            self.error_file = self._open(error_log, "error_log", schedule, opened)
            self.access_file = self._open(access_log, "access_log", schedule, opened)
            self.ssl_request_file = self._open(ssl_request_log, "ssl_request_log", schedule, opened)
        except LogFileError:
            for f in opened:
                f.close()
            raise
        self.stderr_file = (
            LogFile(fd=stderr_fd if stderr_fd is not None else sys.stderr.fileno(), what="stderr",
                    schedule=schedule) if log_stderr else None)
        self._error_targets = tuple(f for f in (self.error_file, self.stderr_file) if f is not None)

    @staticmethod
    def _open(path: Path | None, what: str, schedule: Scheduler | None, opened: list[LogFile]) -> LogFile | None:
        if path is None:
            return None
        f = LogFile(path=path, what=f"[server] {what}", schedule=schedule)
        opened.append(f)
        return f

    @classmethod
    def from_settings(cls, server: Any, schedule: Scheduler | None = None, **kw: Any) -> "Logs":
        """From a `model.ServerSettings`."""
        return cls(server.error_log, server.access_log, server.ssl_request_log, server.log_level,
                   server.log_stderr, schedule=schedule, **kw)

    @property
    def files(self) -> tuple[LogFile, ...]:
        return tuple(f for f in (self.error_file, self.access_file, self.ssl_request_file, self.stderr_file)
                     if f is not None)

    def set_scheduler(self, schedule: Scheduler | None) -> None:
        for f in self.files:
            f.set_scheduler(schedule)

    def enabled(self, key: str) -> bool:
        return key in self._enabled and bool(self._error_targets)

    def error(self, key: str, client: tuple[str, int] | None = None, when: float | None = None,
              **fields: Any) -> None:
        if key not in self._enabled or not self._error_targets:
            return
        line = self.formatter.format(key, self.clock() if when is None else when, client, **fields)
        for f in self._error_targets:
            f.write(line)

    def access(self, vhost: str, client_ip: str, request_line: str, status: int, bytes_out: int,
               referer: str | None, user_agent: str | None, quirks: tuple[str, ...] | None = None,
               when: float | None = None) -> None:
        if self.access_file is not None:
            self.access_file.write(access_line(vhost, client_ip, self.clock() if when is None else when,
                                               request_line, status, bytes_out, referer, user_agent, quirks))

    def ssl_request(self, client_ip: str, protocol: str | None, cipher: str | None, request_line: str,
                    bytes_body: int, handshake_seconds: float, resumed: bool, when: float | None = None,
                    vhost: str | None = None) -> None:
        if self.ssl_request_file is not None:
            self.ssl_request_file.write(ssl_request_line(
                self.clock() if when is None else when, client_ip, protocol, cipher, request_line,
                bytes_body, handshake_seconds, resumed, vhost))

    def reopen(self) -> list[str]:
        """Reopen every file (SIGUSR1). Returns the problems (empty if all went well);
        a file that cannot be reopened keeps its old descriptor."""
        problems: list[str] = []
        failed: list[tuple[Path | None, str]] = []
        for f in self.files:
            try:
                f.reopen()
            except LogFileError as exc:
                problems.append(str(exc))
                failed.append((f.path, str(exc)))
        self.error("logs_reopened")
        for path, problem in failed:
            self.error("log_open_failed", path=path, problem=f"{problem} The old file stays in use.")
        return problems

    def flush(self) -> None:
        for f in self.files:
            f.flush()

    def close(self) -> None:
        for f in self.files:
            f.close()
