"""One grammar per log format: which lines are candidates, how a candidate line becomes a :class:`Record`.

Speed contract (STYLE.md §5): a :class:`Format` gives

* ``candidates``: compiled regexes run over a whole block (``finditer``); only lines they hit reach Python. Each
  begins with a literal (``: `` then a look back for Apache 2.4's IDs and ``SSL Library Error``, ``TLSF0``) so that
  the regex engine skips through the block at memory speed: an alternation without a common literal prefix is ~10
  times slower in CPython's ``re``;
* ``understood(block)``: how many lines of the block this format understands, counted in C (``bytes.count`` or one
  regex), so unparsed lines are attributed without a per-line Python loop;
* ``decode(line, pos, ctx)``: the candidate line -> ``Record`` or ``None``. Never raises (a hypothesis test feeds it
  arbitrary bytes);
* ``block_stats(block, ctx)``: per-block counters for access-style logs (status classes, protocols, ciphers), again
  one regex over the block.
* ``scan_block`` (optional): the candidate loop of one block written for one format, when the generic loop's
  per-line costs matter (Apache 2.4: :func:`tlslog.apache_units.scan_units`, a failed connection's lines as one
  regex match); it must give exactly what the generic loop gives (tests/analyzer/test_fastpath.py and test_units.py
  check it on generated lines; tests/analyzer/line_loop.py keeps the line-by-line loop it replaced as a second
  reference).

Formats (``--input-format`` names): ``apache_error`` (Apache httpd 2.0/2.2/2.4 error_log, with or without tid and
client field), ``tlsfront_error`` (the same grammar with ``TLSF####`` message IDs, see docs/logs.md), ``nginx_error``,
``haproxy`` (httplog lines and TLS connection-error lines, syslog-prefixed or raw), ``access`` (common, combined,
vhost_combined; Apache, nginx and tlsfront), ``ssl_request`` (mod_ssl's ``%t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x
"%r" %b`` and tlsfront's variant).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import stringzilla

from .classify import CONT, EVENT, HEAD, Joiner, Record
from .reasons import REASON_TABLE, classify_openssl, unpack
from .timeparse import Clock


@dataclass
class Ctx:
    """What a decoder may use and update while it reads one file."""

    clock: Clock
    file_index: int = 0
    understood: int = 0  # lines counted by decoders that count themselves (HAProxy)
    status: Counter = field(default_factory=Counter)
    protocols: Counter = field(default_factory=Counter)
    ciphers: Counter = field(default_factory=Counter)
    #: caches of the hot path: "Fri Nov 27 10:50:52 2026" -> epoch; library-error text -> (category, strong)
    seconds: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    #: the Apache 2.4 block fast path (tlslog.apache_units): key -> the group open for it, not yet a Group; and
    #: (ID, message, errno, errno text, reasons) -> UnitInfo
    pending: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    merged: dict = field(default_factory=dict)


def decode_line(decode: Callable[[bytes, int, "Ctx"], Record | None], line: bytes, pos: int, ctx: "Ctx",
                src: int, failed: Callable[[Exception, int], None]) -> Record | None:
    """``decode(line, pos, ctx)`` with the record's source set to `src`. A decoder that raises is
    reported through ``failed(exc, pos)`` (once per file, by the caller) and the line skipped: a
    decoder bug must not end the scan."""
    try:
        rec = decode(line, pos, ctx)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        failed(exc, pos)
        return None
    if rec is not None:
        rec.src = src
    return rec


@dataclass(frozen=True)
class Format:
    name: str
    source: str
    detect: re.Pattern[bytes]  # matches at the start of a line of this format
    candidates: tuple[re.Pattern[bytes], ...]  # each run over the whole block; a line hit by any is a candidate
    decode: Callable[[bytes, int, Ctx], Record | None] | None
    understood: Callable[[bytes, int, int, int], int]  # (data, start, end, lines in data[start:end]) -> understood
    block_stats: Callable[[bytes, Ctx, int, int], int] | None = None  # (data, ctx, start, end) -> lines understood
    #: the candidate loop of one block, specialised for this format (the Apache 2.4 hot path); None: the scan's
    #: generic loop (candidate regexes, then ``decode`` per line). Must give exactly what the generic loop gives.
    scan_block: Callable[..., None] | None = None
    #: (data, start, end) -> (lines, understood lines) of a block ending with a newline, in one pass instead of
    #: ``bytes.count`` and ``understood``; None: those two
    count_lines: Callable[[bytes, int, int], tuple[int, int]] | None = None
    description: str = ""
    #: (ctx, joiner, file index) -> None, called at the end of every ``process_chunks``: a ``scan_block`` that keeps
    #: state of its own between blocks (Apache 2.4's pending groups) hands it to the joiner there
    flush: Callable[[Ctx, Joiner, int], None] | None = None


def _count_regex(pattern: re.Pattern[bytes]) -> Callable[[bytes, int, int, int], int]:
    def count(block: bytes, start: int, end: int, lines: int) -> int:
        return sum(1 for _ in pattern.finditer(block, start, end))

    return count


def _none_understood(block: bytes, start: int, end: int, lines: int) -> int:
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Apache httpd error_log (2.0, 2.2, 2.4) and tlsfront's error log (same grammar, TLSF#### IDs)
#
# 2.4 default ErrorLogFormat (server/log.c, "default" format):
#   [Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1234:tid 140234] (70007)The timeout...: [client 1.2.3.4:5] AH02007: msg
# 2.0/2.2:
#   [Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] msg
# Startup failures end with a bare "AH00016: Configuration Failed" line (APLOG_STARTUP: no prefix at all).
# ---------------------------------------------------------------------------------------------------------------

_AP_LINE = re.compile(
    r"\[(?P<time>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4})\] "
    r"\[(?:(?P<module>[\w-]*):)?(?P<level>[a-z]+\d?)\] "
    r"(?:\[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\] )?"
    r"(?:[\w.-]+\.c\(\d+\): )?"
    r"(?:\[(?:client|remote) [^\]]*\] )*"
    r"(?:\((?P<errno>-?\d+)\)(?P<errtext>[^:\[]*): )?"
    r"(?:\[(?:client|remote) [^\]]*\] )*"
    r"(?P<msg>.*)",
    re.S,
)
_CODE = re.compile(r"(AH\d{5}|TLSF\d{4}): ")
_SERVER = re.compile(r"\(server ([^)\s]+)\)|\bvhost[= ]([^\s,;)]+)|key (\S+?):\d+ from ")

# Apache 2.0/2.2 (and any layout without message IDs): the message (after "] ", an optional errno text and client
# field) starts with one of these words. Slower (the "] " prefix is frequent) but 2.2 logs are rarely huge.
_AP_CANDIDATES_LEGACY = re.compile(
    rb"\] (?:\(-?\d+\)[^:\n]*: )?(?:\[(?:client|remote) [^\]\n]*\] )*(?:AH\d{5}: |TLSF\d{4}: )?"
    rb"(?:SSL (?:Library Error|library error|handshake|input filter|output filter)|Init: |mod_ssl: |Certificate (?:Verification|and private key)"
    rb"|Failed to |Unable to|Cannot |Can't |Couldn't |Could not |Fatal error initialising"
    rb"|Re-negotiation handshake|Request handshake read timeout|ap_proxy_connect_backend disabling"
    rb"|(?:proxy: )?(?:[\w-]+: )?(?:attempt to connect|failed to make connection|disabled connection"
    rb"|error reading status line|Error reading from remote)|Private key|Pass phrase|PRNG|System: |TLSF)"
)
#: Apache 2.4 message IDs worth decoding (mod_ssl, mod_proxy, the mutex and session cache); the rules below say what
#: each means. IDs whose number we could not confirm are listed by text in TEXT_RULES and by number here when known.
AH_CANDIDATE_IDS = (
    "02008", "01996", "02007", "02006", "02039", "02040", "02261", "01382",  # handshake failures
    "01991", "01992", "01993", "01994",  # errors after the handshake (late)
    "02565", "02580", "02578", "02202", "02579", "02203", "02561", "02562", "02572", "02564", "02312",  # startup
    "00023", "00024", "01874", "00804", "02026",  # mutex, session cache
    "00957", "00959", "01114", "00940", "01102", "00898",  # mod_proxy
)
def _trie(words: list[str]) -> str:
    """A regex matching exactly ``words``, factored by common prefixes (CPython's re tries alternatives one by one,
    so ``0(?:1(?:...)|2...)`` beats a flat 30-way alternation)."""
    if words == [""]:
        return ""
    groups: dict[str, list[str]] = {}
    for w in sorted(set(words)):
        groups.setdefault(w[:1], []).append(w[1:])
    parts = [re.escape(c) + _trie(rest) if c else "" for c, rest in groups.items()]
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


#: the Apache 2.4 candidates, message IDs and mod_ssl's "SSL Library Error: " lines, in one pass: every ": " (3 a line here), then a look back for an ID or "SSL Library Error" before it. The
#: literal ": " keeps re's fast prefix scan, which a plain alternation of the two has not (0.24 s instead of 0.30 s
#: for the two passes and their merge on the 2M-line benchmark log). A match starts at the ": ".
_AP_CANDIDATES = re.compile(
    (": (?:(?<=AH" + _trie(list(AH_CANDIDATE_IDS)) + ": )|(?<=SSL Library Error: ))").encode())
_TLSF_CANDIDATES = re.compile(rb"TLSF0[123]\d\d: ")


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    role: int
    kind: str
    category: str | None
    strong: bool
    timeout_category: str | None = None  # when the errno / text says "timed out"
    reasons: bool = False  # category from the OpenSSL error text in the line
    verify: bool = False  # the message ID alone does not decide: check the pattern (AH01382 is any read timeout)


def _r(p: str, role: int, kind: str, cat: str | None, strong: bool, **kw) -> Rule:
    return Rule(re.compile(p), role, kind, cat, strong, **kw)


R_SSLERR = _r(r"^SSL Library Error", CONT, "cont", None, False, reasons=True)
R_HS = _r(r"^SSL library error \d+ in handshake", HEAD, "conn", "other_tls_error", False)
R_HTTP = _r(r"^SSL handshake failed: HTTP spoken on HTTPS port", HEAD, "conn", "plain_http_on_tls_port", True)
R_INT = _r(r"^SSL handshake interrupted by system", HEAD, "conn", "handshake_eof_or_reset", False,
           timeout_category="handshake_timeout")
R_STOP = _r(r"^SSL handshake stopped", HEAD, "conn", "handshake_eof_or_reset", False)
R_VERIFY = _r(r"^Certificate Verification: ", HEAD, "pre", "client_cert_invalid", True)
R_RENEG = _r(r"^Re-negotiation handshake failed", HEAD, "conn", "other_tls_error", False)
R_REQTO = _r(r"^Request handshake read timeout", HEAD, "pre", "handshake_timeout", True, verify=True)
R_MUTEX = _r(r"(?i)^(?:mod_ssl: )?(?:child )?(?:could not|couldn't|cannot|can't|unable to|failed to)\b.*mutex",
             HEAD, "startup", "mutex_permission_denied", True)
R_PRNG = _r(r"PRNG (?:still contains insufficient|not seeded)", HEAD, "startup", "prng_not_seeded", True)
# mod_ssl FAQ: "Why does mod_ssl stop with the error 'Failed to generate temporary 512 bit RSA private key'?" -> PRNG
R_PRNG_TMP = _r(r"^Init: Failed to generate temporary \d+ bit (?:RSA|DH)", HEAD, "startup", "prng_not_seeded", True)
R_PP_BAD = _r(r"^Init: (?:Pass phrase incorrect|Unable to? read pass ?phrase)", HEAD, "startup",
              "passphrase_failure", True)
R_PP_NF = _r(r"^Init: Private key not found", HEAD, "startup", "passphrase_failure", False)
R_KEYMIS = _r(r"^Certificate and private key .* do not match", HEAD, "startup", "key_cert_mismatch", True)
R_RSAKEY = _r(r"^Unable to configure (?:RSA|DSA|ECC?)? ?server private key", HEAD, "startup", "key_cert_mismatch",
              False)
R_CERTF = _r(
    r"^(?:Init: Can't open server (?:certificate|private key) file|Init: Unable to read server (?:certificate|private"
    r" key) from file|Failed to configure certificate|Init: Server \S+ should be SSL-aware but has no certificate"
    r"|Unable to configure (?:RSA|DSA|ECC?)? ?server certificate|Failed to configure at least one certificate"
    r"|SSLCertificate(?:Key|Chain)?File: file .* does not exist or is empty)",
    HEAD, "startup", "cert_file_unreadable", False)
R_ENCKEY = _r(r"^Failed to configure encrypted \(\?\) private key", HEAD, "startup", "passphrase_failure", False)
R_FATAL = _r(r"^Fatal error initialising mod_ssl", HEAD, "startup", None, False)
# AH02026 (ssl:warn) is logged per connection, not at startup: one line, one event
R_SCACHE_LOCK = _r(r"^Failed to acquire SSL session cache lock", EVENT, "solo", "session_cache_error", True)
R_SCACHE = _r(r"(?i)^(?!.*is not configured).*(?:session ?cache|socache|shmcb|SSLSessionCache)", HEAD, "startup",
              "session_cache_error", True)
R_PROXY_TRY = _r(r"attempt to connect to .* failed", HEAD, "proxy_try", "backend_unavailable", False,
                 timeout_category="backend_timeout")
R_PROXY_DIS = _r(r"ap_proxy_connect_backend disabling worker", CONT, "cont", None, False)
R_PROXY_FAIL = _r(r"failed to make connection to backend", HEAD, "proxy_fail", "backend_unavailable", False)
R_PROXY_OFF = _r(r"disabled connection for", EVENT, "solo", "backend_unavailable", True)
R_STATUS = _r(r"error reading status line from remote server", HEAD, "solo", "backend_unavailable", False,
              timeout_category="backend_timeout")
R_READERR = _r(r"Error reading from remote server", CONT, "cont", None, False)
R_SYSTEM = _r(r"^System: ", CONT, "cont", None, False)
# errors after the handshake (ssl_engine_io.c): AH01991/AH01993 (syscall) and AH01992/AH01994 (with SSL Library
# Error lines). They open a "late" group so that their library-error lines do not stick to an earlier handshake
# failure of the same thread; the group is an event only for a definite cause (classify.Group.counts).
R_LATE = _r(r"^SSL (?:input filter read failed|output filter write failed|library error \d+ (?:reading|writing) data)",
            HEAD, "late", None, False)

#: 2.4 message IDs -> rule (a shortcut; the rule's pattern is still checked)
AH_RULES: dict[str, Rule] = {
    "AH02008": R_HS, "AH01996": R_HTTP, "AH02007": R_INT, "AH02006": R_STOP, "AH02039": R_VERIFY,
    "AH02040": R_VERIFY, "AH02261": R_RENEG, "AH01382": R_REQTO, "AH02565": R_KEYMIS, "AH02580": R_PP_BAD,
    "AH00023": R_MUTEX, "AH00957": R_PROXY_TRY, "AH00959": R_PROXY_DIS, "AH01114": R_PROXY_FAIL,
    "AH00940": R_PROXY_OFF, "AH01102": R_STATUS, "AH00898": R_READERR, "AH01991": R_LATE, "AH01992": R_LATE,
    "AH01993": R_LATE, "AH01994": R_LATE, "AH02561": R_CERTF, "AH02572": R_CERTF,
    "AH02564": R_ENCKEY, "AH02312": R_FATAL, "AH02026": R_SCACHE_LOCK, "AH02562": R_CERTF, "AH02579": R_PP_NF,
    "AH02203": R_PP_NF, "AH01874": R_SCACHE, "AH00804": R_SCACHE,
}
#: text rules, in order (2.0/2.2 lines have no IDs; 2.4 IDs not in AH_RULES fall back here)
TEXT_RULES: tuple[Rule, ...] = (
    R_SSLERR, R_LATE, R_HS, R_HTTP, R_INT, R_STOP, R_VERIFY, R_RENEG, R_REQTO, R_MUTEX, R_PRNG, R_PRNG_TMP, R_PP_BAD, R_PP_NF,
    R_KEYMIS, R_RSAKEY, R_ENCKEY, R_CERTF, R_FATAL, R_SCACHE_LOCK, R_SCACHE, R_PROXY_DIS, R_PROXY_TRY, R_PROXY_FAIL,
    R_PROXY_OFF, R_STATUS, R_READERR, R_SYSTEM,
)

#: free-text patterns for lines that are not mod_ssl's wording (tlsfront, HAProxy): (pattern, category)
WORD_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.I), c)
    for p, c in (
        (r"plain HTTP|HTTP spoken on HTTPS|not TLS", "plain_http_on_tls_port"),
        (r"Timeout during SSL handshake|handshake timed? ?out|timed out .*handshak|handshake.*timed? ?out",
         "handshake_timeout"),
        (r"(?:closed|eof|reset|error) during SSL handshake|handshake.*(?:eof|reset|closed|aborted)"
         r"|peer closed connection in SSL handshake", "handshake_eof_or_reset"),
        (r"no client certificate|no required SSL certificate|client certificate (?:missing|required)",
         "client_cert_missing"),
        (r"client (?:SSL )?certificate (?:verify error|not trusted|invalid)|CA chain cannot be verified",
         "client_cert_invalid"),
        (r"inconsistencies between private key and certificate|do not match", "key_cert_mismatch"),
        (r"pass ?phrase", "passphrase_failure"),
        (r"unable to (?:stat|load|read) SSL (?:certificate|private key)|unable to load certificate"
         r"|(?:certificate|key) file .*(?:unreadable|permission denied|not found|no such file)", "cert_file_unreadable"),
        (r"session cache", "session_cache_error"),
        (r"backend.*(?:timed? ?out)|upstream timed out|server timeout", "backend_timeout"),
        (r"backend.*(?:refused|reset|unavailable|down|unreachable|failed)|no server available", "backend_unavailable"),
        (r"SSL handshake failure|handshake fail|TLS handshake", "other_tls_error"),
    )
)


def classify_words(text: str) -> tuple[str, bool] | None:
    """(category, strong) for free text: an OpenSSL reason first, then :data:`WORD_RULES`."""
    cat, _reason = classify_openssl(text)
    if cat is not None:
        return cat, cat != "other_tls_error"
    for pattern, category in WORD_RULES:
        if pattern.search(text):
            return category, category != "other_tls_error"
    return None


def _timed_out(errno: str | None, errtext: str | None, body: str) -> bool:
    # APR_TIMEUP = 70007 "The timeout specified has expired"; ETIMEDOUT = 110
    return errno in ("70007", "110") or "timed out" in body or "timeout" in (errtext or "").lower()


def _vhost(body: str) -> str | None:
    m = _SERVER.search(body)
    if m:
        return m.group(1) or m.group(2) or m.group(3)
    return None


#: tlsfront's ``reason=`` values (docs/logs.md, TLSF0201-TLSF0205) -> category
TLSF_REASONS: dict[str, str] = {
    "no_shared_cipher": "no_shared_cipher",
    "unsupported_protocol": "protocol_mismatch",
    "client_rejected_cert": "client_rejected_cert",
    "client_cert_missing": "client_cert_missing",
    "client_cert_invalid": "client_cert_invalid",
    "plain_http": "plain_http_on_tls_port",
    "eof": "handshake_eof_or_reset",
    "timeout": "handshake_timeout",
    "not_tls": "other_tls_error",
    "other": "other_tls_error",
}
#: tlsfront message IDs that are one event each without a reason= field (docs/logs.md "Message IDs")
TLSF_EVENTS: dict[str, str] = {
    "TLSF0301": "backend_unavailable",  # backend refused the connection
    "TLSF0302": "backend_unavailable",  # backend reset the connection
    "TLSF0303": "backend_timeout",  # backend timed out
    "TLSF0306": "backend_unavailable",  # no backend available
}
#: tlsfront IDs that never are events (lifecycle, notices, debug, marked down/up: not a failed request)
TLSF_QUIET = frozenset({"TLSF0304", "TLSF0305", "TLSF0206", "TLSF0207"})
_TLSF_REASON = re.compile(r"\breason=(\w+)")
#: startup categories a tlsfront configuration error (TLSF0101) can name
_STARTUP_CATEGORIES = frozenset({"key_cert_mismatch", "passphrase_failure", "cert_file_unreadable",
                                 "session_cache_error", "mutex_permission_denied", "prng_not_seeded"})


def _decode_tlsf(code: str, body: str, key, m: re.Match, pos: int, line: bytes, ctx: Ctx) -> Record | None:
    if code in TLSF_QUIET:
        return None
    category = TLSF_EVENTS.get(code)
    if category is None:
        r = _TLSF_REASON.search(body)
        if r is not None:
            category = TLSF_REASONS.get(r.group(1))
            if category is None:  # a reason this analyzer does not know yet: keep the OpenSSL text's opinion
                category = classify_openssl(body)[0] or "other_tls_error"
    if category is None:
        hit = classify_words(body)
        if hit is None or (code < "TLSF0200" and hit[0] not in _STARTUP_CATEGORIES):
            return None
        category = hit[0]
    return Record(EVENT, category, True, key, ctx.clock.apache(m.group("time")), _vhost(body), pos, line)


#: the fixed part of an Apache error-log line, on bytes (the hot path decodes no text it does not need)
_AP_HEAD = re.compile(
    rb"\[([^\]]{19,40})\] \[(?:[\w-]*:)?[a-z]+\d?\] (?:\[pid (\d+)(?::tid (\d+))?\] )?(?:[\w.-]+\.c\(\d+\): )?"
    rb"(?:\[(?:client|remote) [^\]]*\] )*"  # 2.0/2.2 write the client before the errno text, 2.4 after it
    rb"(?:\((-?\d+)\)([^:\[]*): )?(?:\[(?:client|remote) [^\]]*\] )*")
_AH_RULES_B = {k.encode(): v for k, v in AH_RULES.items()}
#: the IDs whose rule decodes without reading the message (not a startup rule: those look for a vhost in the text)
_AH_SIMPLE = {k: r for k, r in _AH_RULES_B.items()
              if not (r.verify or r.reasons or r.kind == "startup" or r.role == CONT)}
_LIBERR_MSG = b"] SSL Library Error"


def _ap_key(line: bytes, limit: int) -> bytes:
    """The joining key of a line: its ``pid N:tid N`` field (b"" when the layout has none, as 2.0/2.2)."""
    i = line.find(b"[pid ", 0, limit)
    if i < 0:
        return b""
    return line[i + 5:line.find(b"]", i, limit)]


_REASON_CACHE_MAX = 4096


def _ap_time(stamp: bytes, ctx: Ctx) -> float | None:
    """``Fri Nov 27 10:50:52.123456 2026`` -> epoch, with a per-second cache (strptime per line is too slow)."""
    key = stamp[:19] + stamp[-5:]
    base = ctx.seconds.get(key)
    if base is None:
        base = ctx.clock.apache(key.decode("ascii", "replace"))
        if base is None:
            return None
        ctx.seconds[key] = base
    if len(stamp) > 25 and stamp[19:20] == b".":
        try:
            return base + float(stamp[19:-5])
        except ValueError:
            return base
    return base


def _ap_vhost(body: bytes) -> str | None:
    i = body.find(b"(server ")
    if i >= 0:
        j = body.find(b")", i)
        if j > i:
            return body[i + 8:j].decode("utf-8", "replace")
    return None


def decode_apache(line: bytes, pos: int, ctx: Ctx) -> Record | None:
    """A candidate line of an Apache-format error log -> Record (or None: not about TLS or proxying)."""
    k = line.find(_LIBERR_MSG)
    if k > 0 and line[:1] == b"[":  # the most frequent candidate, mod_ssl's continuation line: no regex needed
        msg = line[k + 2:]
        hit = ctx.reasons.get(msg)
        if hit is None:
            category = classify_openssl(msg.decode("utf-8", "replace"))[0] or "other_tls_error"
            hit = (category, category != "other_tls_error")
            if len(ctx.reasons) < _REASON_CACHE_MAX:
                ctx.reasons[msg] = hit
        # written in the same instant as its head: no time needed to join it
        return Record(CONT, hit[0], hit[1], _ap_key(line, k + 1), None, None, pos, line, "cont")
    # fast path for Apache 2.4 heads: the message ID is the first " AHnnnnn: " after the time stamp, and most rules
    # need nothing but the ID, the pid:tid key, the time and the vhost
    te = line.find(b"] ", 1, 45)
    c = line.find(b" AH", te) if te > 0 else -1
    if c > 0 and line[c + 8:c + 10] == b": ":
        rule = _AH_RULES_B.get(line[c + 1:c + 8])
        if rule is not None and not rule.verify and not rule.timeout_category and not rule.reasons:
            body = line[c + 10:]
            key = _ap_key(line, c + 1)
            if rule.role == CONT:
                return Record(CONT, rule.category, rule.strong, key, None, None, pos, line, rule.kind)
            vhost = _ap_vhost(body)
            if vhost is None and rule.kind == "startup":
                vhost = _vhost(body.decode("utf-8", "replace"))
            return Record(rule.role, rule.category, rule.strong, key, _ap_time(line[1:te], ctx), vhost, pos, line,
                          rule.kind)
    m = _AP_HEAD.match(line)
    if m is None:
        return None
    msg = line[m.end():]
    key = _ap_key(line, m.end())
    rule = None
    if msg[7:9] == b": " and msg.startswith(b"AH"):
        rule = _AH_RULES_B.get(msg[:7])
        body = msg[9:]
    elif msg.startswith(b"TLSF") and msg[8:10] == b": ":
        text = line.decode("utf-8", "replace")
        mt = _AP_LINE.match(text)
        if mt is None:
            return None
        tmsg = mt.group("msg")
        return _decode_tlsf(tmsg[:8], tmsg[10:], key, mt, pos, line, ctx)
    else:
        body = msg
    tbody: str | None = None
    if rule is not None and rule.verify:
        tbody = body.decode("utf-8", "replace")
        if not rule.pattern.search(tbody):
            rule = None
    if rule is None:
        if tbody is None:
            tbody = body.decode("utf-8", "replace")
        for r in TEXT_RULES:
            if r.pattern.search(tbody):
                rule = r
                break
        else:
            return None
    category, strong = rule.category, rule.strong
    if rule.reasons:
        category = classify_openssl(body.decode("utf-8", "replace"))[0] or "other_tls_error"
        strong = category != "other_tls_error"
    elif rule.timeout_category:
        errno = m.group(4)
        if _timed_out(errno.decode() if errno else None, (m.group(5) or b"").decode("utf-8", "replace"),
                      body.decode("utf-8", "replace")):
            category, strong = rule.timeout_category, True
    if rule.role == CONT:
        return Record(CONT, category, strong, key, None, None, pos, line, rule.kind)
    vhost = _ap_vhost(body)
    if vhost is None and rule.kind == "startup":
        vhost = _vhost(body.decode("utf-8", "replace"))
    return Record(rule.role, category, strong, key, _ap_time(m.group(1), ctx), vhost, pos, line, rule.kind)


#: the head of a 2.4 line in the default ErrorLogFormat, strictly (a line it does not fit takes decode_apache's
#: way): time stamp (groups 1-3: "Fri Nov 27 10:50:52", ".123456", "2026"), the pid:tid key (4), errno and its
#: text (5, 6). Where it fits and ends right at the line's message ID, it reads exactly what decode_apache reads:
#: ``te`` is the stamp's "] " (no "]" inside the stamp), the first "[pid " is this one (none in the stamp or the
#: level field), and _AP_HEAD would match the same fields to the same end (a client field before the errno text
#: or two client fields make this one end earlier: no fit).
_AP24_HEAD = re.compile(
    rb"\[((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)(\.\d{1,9})? (\d{4})\] "
    rb"\[(?:[\w-]*:)?[a-z]+\d?\] \[pid (\d+(?::tid \d+)?)\] "
    rb"(?:\((-?\d+)\)([^:\[\n]*): )?(?:\[(?:client|remote) [^\]\n]*\] )?")
# lines that are NOT Apache error-log lines: neither "[time] ..." nor a bare startup line ("AH00016: Configuration
# Failed", written without prefix). One literal-prefixed regex over the block; such lines are rare, so few matches.
_AP_NOT_UNDERSTOOD = re.compile(rb"\n(?!\[|AH\d{5}: )")


def _count_apache_understood(block: bytes, start: int, end: int, lines: int) -> int:
    bad = sum(1 for _ in _AP_NOT_UNDERSTOOD.finditer(block, start, end - 1))
    if end > start and not (block.startswith(b"[", start) or _AP_BARE.match(block, start)):
        bad += 1
    return lines - bad


_AP_BARE = re.compile(rb"AH\d{5}: ")
#: every newline, with the first byte of the next line captured when that line is NOT understood: good lines give
#: the empty match (one shared b"" object), bad ones a 1-byte bytes (cached by CPython), the block's final newline
#: ``\Z``. One findall replaces ``bytes.count`` plus the ``_AP_NOT_UNDERSTOOD`` pass (0.19 s instead of 0.29 s on
#: the 2M-line benchmark log).
_AP_LINE_STARTS = re.compile(rb"\n(?:(?=\[|AH\d{5}: )|(?=([\s\S]))|\Z)")  # captured in a lookahead: no newline eaten


def _apache_lines(block: bytes, start: int, end: int) -> tuple[int, int]:
    """(lines, understood lines) of ``block[start:end]``, which ends with a newline: exactly
    ``(block.count(b"\n", start, end), _count_apache_understood(...))``."""
    view = stringzilla.Str(block)  # no copy; SIMD counts at memory speed (re and bytes.count: a byte at a time)
    n = view.count("\n", start, end)
    if block[start] == 91 and view.count("\n[", start, end) == n - 1:  # every line starts with "[": the usual block
        return n, n
    starts = _AP_LINE_STARTS.findall(block, start, end)
    n = len(starts)
    bad = n - starts.count(b"")
    if not (block.startswith(b"[", start) or _AP_BARE.match(block, start)):
        bad += 1
    return n, n - bad
_AP_DETECT = re.compile(
    rb"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4}\] \[")
_AP_HAS_IDS = re.compile(rb"(?:\] |: )AH\d{5}: ")
_TLSF_DETECT = re.compile(rb"\] TLSF\d{4}: |\] (?:\[client [^\]\n]*\] )?TLSF\d{4}: ")

def _scan_units(*args) -> None:
    from .apache_units import scan_units  # imported here: apache_units imports this module

    scan_units(*args)


def _flush_units(ctx: Ctx, joiner: Joiner, src: int) -> None:
    from .apache_units import flush

    flush(ctx, joiner, src)


APACHE_ERROR = Format(
    "apache_error", "apache", _AP_DETECT, (_AP_CANDIDATES,), decode_apache,
    _count_apache_understood, scan_block=_scan_units, count_lines=_apache_lines, flush=_flush_units,
    description="Apache httpd 2.4 error_log (AHnnnnn message IDs; any ErrorLogFormat keeping [time] first)",
)
APACHE22_ERROR = Format(
    "apache22_error", "apache", _AP_DETECT, (_AP_CANDIDATES_LEGACY,), decode_apache, _count_apache_understood,
    count_lines=_apache_lines,
    description="Apache httpd 2.0/2.2 error_log (no message IDs)",
)
TLSFRONT_ERROR = Format(
    "tlsfront_error", "tlsfront", _AP_DETECT, (_TLSF_CANDIDATES,), decode_apache, _count_apache_understood,
    count_lines=_apache_lines,
    description="tlsfront error log (Apache 2.4 grammar, TLSF#### IDs)",
)

# ---------------------------------------------------------------------------------------------------------------
# nginx error.log: 2026/11/27 10:50:52 [info] 1234#1234: *5 message, client: 1.2.3.4, server: example.com, ...
# (src/core/ngx_log.c: time, [level], pid#tid, "*connection" for connection-bound messages)
# ---------------------------------------------------------------------------------------------------------------

_NG_LINE = re.compile(
    r"(?P<date>\d{4}/\d\d/\d\d) (?P<hms>\d\d:\d\d:\d\d) \[(?P<level>\w+)\] (?P<pid>\d+)#(?P<tid>\d+): "
    r"(?:\*(?P<cid>\d+) )?(?P<msg>.*)", re.S)
# several literal-prefixed passes: each runs at memory speed, one alternation without a common prefix would not
_NG_CANDIDATES = (
    re.compile(rb"SSL(?:_do_handshake|_read\(\) failed|_write\(\) failed|_CTX_use| handshak| certificate)"),
    re.compile(rb"upstream"),
    re.compile(rb"plain HTTP request"),
    re.compile(rb"cannot load certificate"),
    re.compile(rb"ssl_session_cache"),
)
_NG_SERVER = re.compile(r", server: ([^,\s]+)")
_NG_REQUEST = re.compile(r', request: "([^"]*)"')

_NG_RULES: tuple[tuple[re.Pattern[str], int, str, str | None, bool], ...] = tuple(
    (re.compile(p), role, kind, cat, strong)
    for p, role, kind, cat, strong in (
        (r"SSL_do_handshake\(\) failed", EVENT, "solo", None, True),  # category from the OpenSSL text
        (r"peer closed connection in SSL handshake", EVENT, "solo", "handshake_eof_or_reset", True),
        (r"timed out .*while SSL handshaking", EVENT, "solo", "handshake_timeout", True),
        (r"while SSL handshaking", EVENT, "solo", "handshake_eof_or_reset", True),
        (r"client sent plain HTTP request to HTTPS port", EVENT, "solo", "plain_http_on_tls_port", True),
        (r"client sent no required SSL certificate", EVENT, "solo", "client_cert_missing", True),
        (r"client SSL certificate verify error", EVENT, "solo", "client_cert_invalid", True),
        (r"upstream timed out", HEAD, "ngx_upstream", "backend_timeout", True),
        (r"(?:connect\(\) failed|no live upstreams|upstream prematurely closed|recv\(\) failed).*upstream",
         HEAD, "ngx_upstream", "backend_unavailable", False),
        (r"cannot load certificate|SSL_CTX_use_\w+\(|PEM_read_bio", EVENT, "solo", None, False),
        # after the handshake: only a definite cause counts (a client rejecting the certificate late, e.g. after
        # False Start / early data); "unexpected eof" or unknown reasons in SSL_read are ordinary disconnects
        (r"SSL_(?:read|write)\(\) failed", EVENT, "late", None, True),
        (r"ssl_session_cache", EVENT, "solo", "session_cache_error", True),
    )
)


def decode_nginx(line: bytes, pos: int, ctx: Ctx) -> Record | None:
    text = line.decode("utf-8", "replace")
    m = _NG_LINE.match(text)
    if m is None:
        return None
    msg = m.group("msg")
    for pattern, role, kind, category, strong in _NG_RULES:
        if pattern.search(msg):
            break
    else:
        return None
    if category is None:
        category, _ = classify_openssl(msg)
        if kind == "late":
            if category in (None, "other_tls_error", "handshake_eof_or_reset"):
                return None
            kind = "solo"
        if category is None:
            category = "cert_file_unreadable" if kind == "solo" and "load certificate" in msg else "other_tls_error"
        strong = category != "other_tls_error"
    ms = _NG_SERVER.search(msg)
    vhost = ms.group(1) if ms else None
    detail = ""
    if kind == "ngx_upstream":
        mr = _NG_REQUEST.search(msg)
        detail = mr.group(1) if mr else ""
    t = ctx.clock.nginx(m.group("date"), m.group("hms"))
    return Record(role, category, strong, (m.group("pid"), m.group("cid")), t, vhost, pos, line, kind, detail)


NGINX_ERROR = Format(
    "nginx_error", "nginx",
    re.compile(rb"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?:debug|info|notice|warn|error|crit|alert|emerg)\] \d+#\d+: "),
    _NG_CANDIDATES, decode_nginx, _count_regex(re.compile(rb"(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[")),
    description="nginx error.log",
)

# ---------------------------------------------------------------------------------------------------------------
# HAProxy: httplog (doc/configuration.txt 8.2.3) and connection-error lines ("fe/bind: SSL handshake failure"),
# raw (log stdout format raw) or behind a syslog header.
# ---------------------------------------------------------------------------------------------------------------

_HA_PREFIX = r"(?:<\d+>)?(?:(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ )?(?:\S*haproxy\[\d+\]: )?"
_HA_HTTP = re.compile(
    _HA_PREFIX + r"(?P<client>\S+):\d+ \[(?P<accept>[^\]]+)\] (?P<fe>\S+) (?P<be>[^/\s]+)/(?P<srv>\S+) "
    r"(?P<timers>[-\d/+]+) (?P<status>-?\d+) \+?-?\d+ \S+ \S+ (?P<term>[-\w]{4})")
_HA_CONN = re.compile(_HA_PREFIX + r"(?P<client>\S+):\d+ \[(?P<accept>[^\]]+)\] (?P<fe>[^/\s]+)/(?P<bind>[^:\s]+): "
                      r"(?P<msg>.*)", re.S)
_HA_TCP = re.compile(_HA_PREFIX + r"(?P<client>\S+):\d+ \[(?P<accept>[^\]]+)\] (?P<fe>\S+) ")

#: termination state (first two characters) -> category (doc/configuration.txt 8.5)
HA_TERMINATION: dict[str, str] = {
    "SC": "backend_unavailable",  # server refused / failed connection
    "SH": "backend_unavailable",  # server aborted before sending complete headers
    "sC": "backend_timeout",  # timeout connect
    "sH": "backend_timeout",  # timeout server while waiting for headers
    "sQ": "backend_timeout",  # timeout queue
}
#: %[fc_err] connection error codes (include/haproxy/connection-t.h, enum CO_ER_*, HAProxy 2.6) -> category, used
#: when %[ssl_fc_err] carries no OpenSSL error
HA_FC_ERR: dict[int, str] = {
    24: "handshake_eof_or_reset",  # CO_ER_SSL_EMPTY "Connection closed during SSL handshake"
    25: "handshake_eof_or_reset",  # CO_ER_SSL_ABORT "Connection error during SSL handshake"
    26: "handshake_timeout",  # CO_ER_SSL_TIMEOUT "Timeout during SSL handshake"
    29: "other_tls_error",  # CO_ER_SSL_RENEG
    30: "client_cert_invalid",  # CO_ER_SSL_CA_FAIL "SSL client CA chain cannot be verified"
    31: "client_cert_invalid",  # CO_ER_SSL_CRT_FAIL "SSL client certificate not trusted"
    32: "other_tls_error",  # CO_ER_SSL_MISMATCH
    33: "other_tls_error",  # CO_ER_SSL_MISMATCH_SNI
    34: "other_tls_error",  # CO_ER_SSL_HANDSHAKE "SSL handshake failure"
    35: "other_tls_error",  # CO_ER_SSL_HANDSHAKE_HB
    36: "other_tls_error",  # CO_ER_SSL_KILLED_HB
    38: "other_tls_error",  # CO_ER_SSL_EARLY_FAILED
}
# the documented error-log-format example: %[fc_err]/%[ssl_fc_err,hex]/%[ssl_c_err]/%[ssl_c_ca_err]/...
_HA_ERRS = re.compile(r" (?P<fc>\d{1,3})/(?P<ssl>[0-9A-Fa-f]{8,16})/(?P<c>\d+)/(?P<ca>\d+)/")
# %[ssl_fc_sni]/%sslv/%sslc appended to a log-format
_HA_TLS = re.compile(r"(?P<sni>[^\s/]+)/(?P<proto>TLSv1(?:\.[0-3])?|SSLv3)/(?P<cipher>[^\s/]+)")
_HA_NOTICE = re.compile(r"(?:<\d+>)?(?:\S+ +\d+ [\d:]+ \S+ \S*haproxy\[\d+\]: )?"
                        r"(?:\[(?:NOTICE|WARNING|ALERT)\]|(?:Server|Proxy|backend|frontend) \S+ )")


def _ha_errors(text: str) -> str | None:
    m = _HA_ERRS.search(text)
    if m is None:
        return None
    ssl_err = int(m.group("ssl"), 16) & 0xFFFFFFFF
    if ssl_err:
        lib, reason = unpack(f"{ssl_err:08X}", "")
        cat = REASON_TABLE.get((lib, reason))
        if cat is None:
            cat = classify_openssl(text)[0] or "other_tls_error"
        return cat
    fc = int(m.group("fc"))
    if fc == 0:
        return None
    return HA_FC_ERR.get(fc, "other_tls_error")


def _ha_protocol(text: str, fallback_vhost: str, ctx: Ctx) -> None:
    t = _HA_TLS.search(text)
    if t is not None:
        sni = t.group("sni")
        vhost = sni if sni != "-" else fallback_vhost
        ctx.protocols[(vhost, t.group("proto"))] += 1
        ctx.ciphers[(vhost, t.group("cipher"))] += 1


def decode_haproxy(line: bytes, pos: int, ctx: Ctx) -> Record | None:
    text = line.decode("utf-8", "replace")
    m = _HA_HTTP.match(text)
    if m is not None:
        ctx.understood += 1
        status = m.group("status")
        if len(status) == 3 and status[0] in "12345":
            ctx.status[status[0] + "xx"] += 1
        fe = m.group("fe").rstrip("~")
        _ha_protocol(text[m.end():], fe, ctx)
        category = HA_TERMINATION.get(m.group("term")[:2])
        if category is None:
            return None
        return Record(EVENT, category, True, None, ctx.clock.clf(m.group("accept")), fe, pos, line)
    m = _HA_CONN.match(text)
    if m is not None:
        ctx.understood += 1
        hit = classify_words(m.group("msg"))
        if hit is None:
            return None
        return Record(EVENT, hit[0], hit[1], None, ctx.clock.clf(m.group("accept")), m.group("fe"), pos, line)
    m = _HA_TCP.match(text)
    if m is not None:  # tcplog or a custom (error-)log-format, e.g. with %[fc_err]/%[ssl_fc_err,hex]
        ctx.understood += 1
        cat = _ha_errors(text) or classify_openssl(text)[0]
        if cat is None:
            return None
        return Record(EVENT, cat, True, None, ctx.clock.clf(m.group("accept")), m.group("fe").rstrip("~"), pos,
                      line)
    if _HA_NOTICE.match(text):  # HAProxy's own notices: "Server app/app1 is DOWN", "[ALERT] (1) : config : ..."
        ctx.understood += 1
        hit = classify_words(text)
        if hit is not None and hit[0] in ("key_cert_mismatch", "cert_file_unreadable", "passphrase_failure"):
            return Record(EVENT, hit[0], hit[1], None, None, None, pos, line)
    return None


HAPROXY = Format(
    "haproxy", "haproxy",
    re.compile(rb"(?:<\d+>)?(?:[^\n]*?haproxy\[\d+\]: )?\S+:\d+ \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d(?:\.\d+)?\] "),
    (re.compile(rb"[^\n]+"),), decode_haproxy, _none_understood,
    description="HAProxy httplog and TLS connection-error lines (raw or syslog)",
)

# ---------------------------------------------------------------------------------------------------------------
# access logs: common / combined / vhost_combined (Apache mod_log_config, nginx "combined", tlsfront)
#   127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "ref" "ua"
#   www.example.com:443 127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 2326 "ref" "ua"
# ---------------------------------------------------------------------------------------------------------------

_ACC_STATUS = re.compile(rb'\] "[^"\n]*" ([1-5])\d\d ')


def _access_stats(block: bytes, ctx: Ctx, start: int = 0, end: int | None = None) -> int:
    classes = _ACC_STATUS.findall(block, start, len(block) if end is None else end)
    for digit, n in Counter(classes).items():
        ctx.status[digit.decode() + "xx"] += n
    return len(classes)


ACCESS = Format(
    "access", "access",
    re.compile(rb'(?:\S+ )?\S+ \S+ \S+ \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "'),
    (), None, _none_understood, _access_stats,
    description="access log: common, combined, vhost_combined (Apache, nginx, tlsfront)",
)

# mod_ssl's default: CustomLog ssl_request_log "%t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x \"%r\" %b"
#   [27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 "GET / HTTP/1.1" 512
# tlsfront's (docs/logs.md): the same six fields + handshake seconds + new|reused + the vhost label (%v:%p), last:
#   [27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1 ECDHE-RSA-AES128-SHA "GET / HTTP/1.0" - 0.001234 new www.test:443
# mod_ssl users had one ssl_request_log per vhost and the line names none ("-"); tlsfront writes one file for all
# vhosts, so its lines end with the vhost (lines of tlsfront before that field end at new|reused: "-"). A leading
# vhost (``%t %v %h ...``, a common custom variant) is read too. The tail is optional: a line whose tail is not
# tlsfront's is still counted, under its leading vhost or "-", exactly as before the trailing field existed.
_SSLREQ = re.compile(
    rb"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] (?:(?P<vhost>\S+) )??\S+ "
    rb"(?P<proto>TLSv1(?:\.[0-3])?|SSLv[23]|DTLSv1(?:\.2)?|-) (?P<cipher>\S+) \""
    # greedy to the end of the line, then back to the last '"' after which tlsfront's tail fits exactly
    rb"(?:[^\n]*\" (?:\d+|-) \d+\.\d+ (?:new|reused) (?P<tail_vhost>[^\s\"]+)[ \t\r]*$)?",
    re.M)


def _sslreq_stats(block: bytes, ctx: Ctx, start: int = 0, end: int | None = None) -> int:
    n = 0
    end = len(block) if end is None else end
    for (vhost, proto, cipher, tail_vhost), k in Counter(_SSLREQ.findall(block, start, end)).items():
        named = tail_vhost or vhost
        v = named.decode("utf-8", "replace") if named else "-"
        ctx.protocols[(v, proto.decode())] += k
        ctx.ciphers[(v, cipher.decode("utf-8", "replace"))] += k
        n += k
    return n


SSL_REQUEST = Format(
    "ssl_request", "ssl_request",
    re.compile(rb"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] \S+ (?:\S+ )?(?:TLSv1(?:\.[0-3])?|SSLv[23]|-) "),
    (), None, _none_understood, _sslreq_stats,
    description="ssl_request_log (mod_ssl's %t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x \"%r\" %b; tlsfront's, which "
                "adds handshake seconds, new|reused and the vhost)",
)

FORMATS: dict[str, Format] = {
    f.name: f for f in (APACHE_ERROR, APACHE22_ERROR, TLSFRONT_ERROR, NGINX_ERROR, HAPROXY, ACCESS, SSL_REQUEST)
}
ALIASES = {
    "apache": "apache_error", "error_log": "apache_error", "apache24_error": "apache_error",
    "apache20_error": "apache22_error", "tlsfront": "tlsfront_error", "nginx": "nginx_error",
    "apache_access": "access", "nginx_access": "access", "tlsfront_access": "access", "common": "access",
    "combined": "access", "vhost_combined": "access", "ssl_request_log": "ssl_request", "httplog": "haproxy",
}


def lookup(name: str) -> Format:
    """``--input-format NAME`` -> Format; raises ValueError listing the valid names."""
    key = ALIASES.get(name, name)
    if key not in FORMATS:
        raise ValueError(
            f"unknown input format {name!r}; valid: {', '.join(sorted(FORMATS))} (aliases: {', '.join(sorted(ALIASES))})")
    return FORMATS[key]


def detect(head: bytes, max_lines: int = 200) -> Format | None:
    """Pick the format most lines of ``head`` (the start of a file) match; None if no line matches any."""
    lines = head.split(b"\n", max_lines)[:max_lines]
    if len(lines) > 1 and not head.endswith(b"\n"):
        lines = lines[:-1] or lines
    scores: Counter = Counter()
    tlsf = 0
    order = ("apache_error", "nginx_error", "haproxy", "ssl_request", "access")
    for ln in lines:
        for name in order:
            if FORMATS[name].detect.match(ln):
                scores[name] += 1
                if name == "apache_error" and _TLSF_DETECT.search(ln):
                    tlsf += 1
                break
    if not scores:
        return None
    best = max(order, key=lambda n: (scores[n], -order.index(n)))
    if best == "apache_error":
        if tlsf * 2 >= scores[best]:
            return TLSFRONT_ERROR
        if not _AP_HAS_IDS.search(head):  # httpd 2.0/2.2: no AHnnnnn IDs to look for
            return APACHE22_ERROR
    return FORMATS[best]
