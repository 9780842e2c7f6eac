"""Pure formatters for tlsfront's three logs: error log, access log, ssl_request_log.

Nothing here does I/O: every function takes the event time (a float from
`time.time()`) and returns one ``str`` line ending in ``"\\n"``.  `logfiles.py`
writes them.  The analyzer (`tlslog`) parses these lines with the grammar it uses
for Apache httpd 2.4, so the formats copy Apache's exactly; docs/logs.md is the
reference and lists every message ID (keep the two in step: a test checks it).

Error log (Apache 2.4's default ``ErrorLogFormat`` without the tid)::

    [Fri Nov 27 09:02:59.123456 2026] [ssl:info] [pid 1234] [client 10.0.0.1:50000] TLSF0201: message

- time: local time, ``%a %b %d %H:%M:%S.<usec> %Y`` (APR's ctime; no zone, as Apache);
- ``[module:level]``: module is ``ssl``, ``proxy``, ``core`` or ``mpm``; level is
  one of Apache's (`LEVELS`);
- ``[client IP:PORT]`` only when the event has a peer (Apache prints IPv6 bare too);
- ``TLSFnnnn:`` the stable message ID (`MESSAGES`), then the message text.

Access log (Apache's ``vhost_combined`` plus one trailing field)::

    www.example.test:443 10.0.0.1 - - [27/Nov/2026:09:02:59 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8.5.0" -

ssl_request_log (mod_ssl's default plus handshake seconds and new/reused)::

    [27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.3 TLS_AES_128_GCM_SHA256 "GET / HTTP/1.1" 512 0.001234 new

Speed: these run once per request/event on the hot path, so the formatted
second is cached (one `time.strftime` per second, not per line) and the
templates are plain ``str.format`` calls.  Peer-controlled text (request line,
Referer, User-Agent, anything in an error message) is escaped the way Apache's
``ap_escape_logitem`` does, so a line can never be split or forged.
"""

from __future__ import annotations

import os
import re
import time
import weakref
from dataclasses import dataclass
from typing import Any

# Apache 2.4's levels, most severe first (LogLevel). trace1..8 are accepted and
# rank below debug.
LEVELS: tuple[str, ...] = (
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug",
    "trace1", "trace2", "trace3", "trace4", "trace5", "trace6", "trace7", "trace8",
)
LEVEL_RANK: dict[str, int] = {name: rank for rank, name in enumerate(LEVELS)}


@dataclass(frozen=True)
class Message:
    """One kind of error-log event: a stable ID, its level, module and template.

    `template` is a ``str.format`` string; its fields are the keyword arguments
    given to `ErrorLogFormatter.format`.
    """

    id: str
    level: str
    module: str
    template: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"TLSF\d{4}", self.id):
            raise ValueError(f"message id {self.id!r} is not TLSFnnnn")
        if self.level not in LEVEL_RANK:
            raise ValueError(f"message {self.id}: level {self.level!r} is not one of {', '.join(LEVELS)}")


# The table of every error-log event tlsfront writes.  Keys are what callers
# pass; IDs are what the analyzer keys on.  NEVER renumber or reuse an ID; add
# new ones.  Ranges: 00xx lifecycle, 01xx configuration/files, 02xx TLS,
# 03xx backends, 04xx client-side HTTP.  docs/logs.md mirrors this table.
MESSAGES: dict[str, Message] = {m_key: m for m_key, m in (
    # -- lifecycle (Apache: AH00163 "... configured -- resuming normal operations", AH00169 "caught SIGTERM")
    ("startup", Message("TLSF0001", "notice", "core",
        "tlsfront/{version} ({versions}) configured -- resuming normal operations")),
    ("listening", Message("TLSF0002", "notice", "core",
        "listening on {address} ({scheme}) for vhost {vhost}")),
    ("shutdown_begin", Message("TLSF0003", "notice", "core",
        "caught {signal}, shutting down (grace {grace_seconds}s)")),
    ("shutdown_done", Message("TLSF0004", "notice", "core", "shutdown complete")),
    ("reload_begin", Message("TLSF0005", "notice", "core",
        "caught SIGHUP, reloading configuration from {path}")),
    ("reload_done", Message("TLSF0006", "notice", "core",
        "configuration reloaded from {path} ({vhosts} vhosts)")),
    ("reload_failed", Message("TLSF0007", "error", "core",
        "reload failed, the old configuration keeps serving: {error}")),
    ("logs_reopened", Message("TLSF0008", "notice", "core",
        "caught SIGUSR1, log files reopened")),
    ("worker_started", Message("TLSF0009", "notice", "mpm",
        "worker {worker} started (pid {worker_pid})")),
    ("worker_exited", Message("TLSF0010", "error", "mpm",
        "worker {worker} (pid {worker_pid}) exited: {status}; restarting in {delay_seconds}s")),
    ("reload_partial", Message("TLSF0011", "warn", "core",
        "reload applied, except: {detail}")),
    ("tickets_rotated", Message("TLSF0012", "notice", "ssl",
        "session ticket keys rotated: new TLS contexts for {vhosts} vhosts, previous workers draining")),
    ("worker_start_failed", Message("TLSF0013", "emerg", "mpm",
        "worker {worker} (pid {worker_pid}) exited during start-up: {status}; stopping")),
    # mod_ssl: "Init: Seeding PRNG with N bytes of entropy" (SSLRandomSeed startup), issue 5
    ("prng_seeded", Message("TLSF0014", "notice", "ssl", "{result}")),
    # -- configuration and files
    ("config_error", Message("TLSF0101", "emerg", "core",
        "configuration error in {path}: {where}: {problem}")),
    ("key_permissions", Message("TLSF0102", "warn", "ssl",
        "private key file {path} is readable by group or others (mode {mode}): chmod 600 it")),
    ("cert_expiring", Message("TLSF0103", "warn", "ssl",
        "certificate {path} of vhost {vhost} (CN {subject_cn}, serial {serial}) expires {not_after} ({days} days left)")),
    ("log_open_failed", Message("TLSF0104", "error", "core",
        "cannot open log file {path}: {problem}")),
    ("bind_failed", Message("TLSF0105", "emerg", "core",
        "cannot listen on {address} for vhost {vhost}: {problem}")),
    ("config_warning", Message("TLSF0106", "warn", "core",
        "configuration warning: {warning}")),
    # -- TLS (mod_ssl logs handshake failures at info: AH02008 + "SSL Library Error:" lines)
    ("handshake_failed", Message("TLSF0201", "info", "ssl",
        "SSL handshake failed (server {vhost}): reason={reason} alert={alert} "
        "SSL Library Error: {openssl}")),
    ("handshake_eof", Message("TLSF0202", "info", "ssl",
        "SSL handshake interrupted by the client (server {vhost}): reason=eof alert=- {detail}")),
    ("handshake_timeout", Message("TLSF0203", "info", "ssl",
        "SSL handshake timed out after {seconds}s (server {vhost}): reason=timeout alert=-")),
    ("plain_http", Message("TLSF0204", "info", "ssl",
        "SSL handshake failed: HTTP spoken on HTTPS port (server {vhost}): reason=plain_http alert=- "
        "request \"{request_line}\"; answered 400")),
    ("not_tls", Message("TLSF0205", "info", "ssl",
        "SSL handshake failed: not a TLS ClientHello (server {vhost}): reason=not_tls alert=- "
        "first bytes {first_bytes}; connection closed")),
    ("handshake_done", Message("TLSF0206", "debug", "ssl",
        "SSL handshake done (server {vhost}): protocol={protocol} cipher={cipher} "
        "resumed={resumed} seconds={seconds}")),
    ("session_cache_miss", Message("TLSF0207", "debug", "ssl",
        "session offered by the client was not resumed (server {vhost}): offered={offered}")),
    # -- backends (Apache: AH00957 "connect to remote machine failed", AH01102 "error reading status line")
    ("backend_refused", Message("TLSF0301", "error", "proxy",
        "backend {backend} refused the connection (vhost {vhost}): {detail}; answered {status}")),
    ("backend_reset", Message("TLSF0302", "error", "proxy",
        "backend {backend} reset the connection (vhost {vhost}): {detail}; answered {status}")),
    ("backend_timeout", Message("TLSF0303", "error", "proxy",
        "backend {backend} timed out after {seconds}s waiting for {phase} (vhost {vhost}); answered {status}")),
    ("backend_down", Message("TLSF0304", "warn", "proxy",
        "backend {backend} marked down for {seconds}s (vhost {vhost})")),
    ("backend_up", Message("TLSF0305", "notice", "proxy",
        "backend {backend} is up again (vhost {vhost})")),
    ("no_backend", Message("TLSF0306", "error", "proxy",
        "no backend available for vhost {vhost} ({down} of {count} down); answered {status}")),
    # -- client side HTTP (Apache: AH01382 request header read timeout)
    ("client_header_timeout", Message("TLSF0401", "info", "core",
        "request header read timeout after {seconds}s (server {vhost})")),
    ("bad_request", Message("TLSF0402", "info", "core",
        "bad request (server {vhost}): {problem}; answered {status}")),
    # nginx: "client prematurely closed connection" (info) and status 499 in its access log
    ("client_closed", Message("TLSF0403", "info", "core",
        "client closed the connection before the response was complete (server {vhost}): "
        "{request}; {body_bytes} response body bytes sent; logged as {status}")),
)}

MESSAGES_BY_ID: dict[str, Message] = {m.id: m for m in MESSAGES.values()}
if len(MESSAGES_BY_ID) != len(MESSAGES):  # pragma: no cover - guards the table above
    raise RuntimeError("duplicate message id in logformat.MESSAGES")


# -- escaping (httpd server/util.c ap_escape_logitem / ap_escape_errorlog_item) ---------------

# Bytes Apache escapes: control characters, DEL, the quote and the backslash
# (so quoted fields stay parseable), and everything non-ASCII is written as
# \xhh of its UTF-8/latin-1 byte, which keeps every line pure ASCII.
_NEEDS_ESCAPE = re.compile(r'[^\x20-\x7e]|["\\]')
_SPECIAL = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\v": "\\v"}


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    special = _SPECIAL.get(ch)
    if special is not None:
        return special
    data = ch.encode("utf-8", "surrogateescape") if ord(ch) > 0xFF else ch.encode("latin-1")
    return "".join(f"\\x{b:02x}" for b in data)


def escape(value: Any) -> str:
    """Apache-style log escaping: printable ASCII passes, the rest becomes ``\\xhh``.

    >>> escape('GET /"a"\\n')
    'GET /\\\\"a\\\\"\\\\n'
    """
    text = value if isinstance(value, str) else str(value)
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: one C-speed scan
        return text
    return _NEEDS_ESCAPE.sub(_escape_char, text)


def escape_bytes(data: bytes) -> str:
    """Raw peer bytes (latin-1 view) escaped for a log line."""
    return escape(data.decode("latin-1"))


# -- time stamps, cached per second -------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class _SecondCache:
    """Formats the per-second part of both time stamps once per second.

    One instance per process is enough; the cache is a single slot because log
    lines arrive in time order.
    """

    __slots__ = ("second", "error_head", "error_year", "clf")

    def __init__(self) -> None:
        self.second = -1
        self.error_head = ""
        self.error_year = ""
        self.clf = ""

    def update(self, second: int) -> None:
        tm = time.localtime(second)
        self.second = second
        # APR's ctime: "Fri Nov 27 09:02:59" (day zero-padded), year after the usec.
        self.error_head = (
            f"[{_DAYS[tm.tm_wday]} {_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:02d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        )
        self.error_year = f" {tm.tm_year}]"
        off = tm.tm_gmtoff or 0
        sign = "+" if off >= 0 else "-"
        off = abs(off) // 60
        # CLF %t: [27/Nov/2026:09:02:59 +0000]
        self.clf = (
            f"[{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {sign}{off // 60:02d}{off % 60:02d}]"
        )


_cache = _SecondCache()


def error_time(when: float) -> str:
    """``[Fri Nov 27 09:02:59.123456 2026]`` in local time."""
    second = int(when)
    if second != _cache.second:
        _cache.update(second)
    usec = int((when - second) * 1_000_000)
    return f"{_cache.error_head}.{usec:06d}{_cache.error_year}"


def clf_time(when: float) -> str:
    """``[27/Nov/2026:09:02:59 +0000]`` in local time (Apache's ``%t``)."""
    second = int(when)
    if second != _cache.second:
        _cache.update(second)
    return _cache.clf


def reset_time_cache() -> None:
    """Forget the cached second (tests that change TZ call this after `time.tzset()`)."""
    _cache.second = -1


# -- error log ------------------------------------------------------------------------------------

Peer = tuple[str, int]


class ErrorLogFormatter:
    """Formats error-log lines for one process.

    >>> f = ErrorLogFormatter(pid=1234)
    >>> f.format("backend_refused", when=0.5, client=("10.0.0.1", 50000), backend="127.0.0.1:8081",
    ...          vhost="www.example.test:443", detail="Connection refused", status=502)[-90:]
    '081 refused the connection (vhost www.example.test:443): Connection refused; answered 502\\n'

    The pid is re-read after ``fork()`` (os.register_at_fork), so workers need
    no new formatter.
    """

    def __init__(self, pid: int | None = None) -> None:
        self._fixed_pid = pid is not None
        self._pid_field = f"[pid {pid if pid is not None else os.getpid()}]"
        if not self._fixed_pid:
            _follow_fork.add(self)
        # Pre-joined "[module:level] [pid N] " per message key.
        self._heads: dict[str, str] = {}
        self._build_heads()

    def _refresh_pid(self) -> None:
        self._pid_field = f"[pid {os.getpid()}]"
        self._build_heads()

    def _build_heads(self) -> None:
        self._heads = {
            key: f" [{m.module}:{m.level}] {self._pid_field} " for key, m in MESSAGES.items()
        }

    def format(self, key: str, when: float, client: Peer | None = None, **fields: Any) -> str:
        """One error-log line for event `key` (a key of `MESSAGES`).

        Every field value is escaped. A missing field raises KeyError naming it:
        that is a programming error, caught by the tests, never by a peer.
        """
        message = MESSAGES[key]
        text = message.template.format_map({k: escape(v) for k, v in fields.items()})
        client_field = f"[client {client[0]}:{client[1]}] " if client is not None else ""
        return f"{error_time(when)}{self._heads[key]}{client_field}{message.id}: {text}\n"

    def format_raw(self, level: str, module: str, message_id: str, text: str, when: float,
                   client: Peer | None = None) -> str:
        """A line outside the table (e.g. Twisted's own log events); text is escaped."""
        client_field = f"[client {client[0]}:{client[1]}] " if client is not None else ""
        return f"{error_time(when)} [{module}:{level}] {self._pid_field} {client_field}{message_id}: {escape(text)}\n"


# Formatters that write the current pid; weak, so a reload's old formatter can go.
_follow_fork: "weakref.WeakSet[ErrorLogFormatter]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for formatter in list(_follow_fork):
        formatter._refresh_pid()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- access log (vhost_combined + quirks) ---------------------------------------------------------

def access_line(vhost: str, client_ip: str, when: float, request_line: str, status: int,
                bytes_out: int, referer: str | None, user_agent: str | None,
                quirks: tuple[str, ...] | None = None, user: str | None = None) -> str:
    """``%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i" quirks``.

    `vhost` is `VHost.label` (already ``name:port``). `bytes_out` is ``%O``
    (bytes sent, headers included). `quirks` is the tuple of mod_ssl-style
    quirk names applied (``nokeepalive``, ``downgrade-1.0``, ...), written
    comma-separated, or ``-`` when none.
    """
    return (
        f"{vhost} {client_ip} - {escape(user) if user else '-'} {clf_time(when)} "
        f'"{escape(request_line)}" {status} {bytes_out} '
        f'"{escape(referer) if referer else "-"}" "{escape(user_agent) if user_agent else "-"}" '
        f"{','.join(quirks) if quirks else '-'}\n"
    )


def ssl_request_line(when: float, client_ip: str, protocol: str | None, cipher: str | None,
                     request_line: str, bytes_body: int, handshake_seconds: float,
                     resumed: bool, vhost: str | None = None) -> str:
    """``%t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x "%r" %b`` + handshake seconds + ``new|reused`` + ``%v:%p``.

    ``%b`` is the response body size, ``-`` when zero (as Apache). `vhost` is
    `VHost.label` (``server_name:port``, the access log's first field and the
    metrics' ``vhost`` label), ``-`` when unknown. It is the LAST field: mod_ssl
    users had one ssl_request_log per vhost, tlsfront writes one for all, so the
    line must name its vhost, and putting it at the end keeps mod_ssl's six
    fields where mod_ssl's parsers look for them.

    >>> ssl_request_line(0.0, "10.0.0.1", "TLSv1", "ECDHE-RSA-AES128-SHA", "GET / HTTP/1.0", 0, 0.0, True,
    ...                  "www.example.test:443")[-56:]
    '"GET / HTTP/1.0" - 0.000000 reused www.example.test:443\\n'
    """
    return (
        f"{clf_time(when)} {client_ip} {protocol or '-'} {cipher or '-'} "
        f'"{escape(request_line)}" {bytes_body if bytes_body else "-"} '
        f"{handshake_seconds:.6f} {'reused' if resumed else 'new'} {escape(vhost) if vhost else '-'}\n"
    )
