"""Apache 2.4 error log, block level: a failed connection's lines as ONE regex match (the hot path of ``tlslog scan``).

Theory of operation
-------------------
mod_ssl logs a failed handshake as a head line (``AH02008: SSL library error 1 in handshake (server www:443)``)
immediately followed by its ``SSL Library Error:`` lines, same ``pid:tid`` (``ssl_engine_log.c``). One compiled
regex, :data:`_AP_UNITS`, run over the whole block, hits every candidate line that :data:`decoders._AP_CANDIDATES`
hits, and where the hit is a message ID whose rule needs nothing but the ID (``decoders._AH_SIMPLE``) it goes on
to take the rest of that line and up to two following library-error lines in the same match (a *unit*)::

    [Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 7:tid 9] [client 1.2.3.4:5] AH02008: SSL library ...(server w:443)
    [Fri Nov 27 10:50:52.123470 2026] [ssl:info] [pid 7:tid 9] SSL Library Error: error:0A000412:...bad certificate

Python then does per unit what cannot be left to the match (the head's stamp, key and errno fields before the ID, by
the same strict ``decoders._AP24_HEAD`` that the line loop it replaced used (tests/analyzer/line_loop.py); the library-error lines must carry
the head's key) and no more: what the unit means (its rule, category, vhost, and the category of the group it forms
with its library-error lines) is computed once per *distinct* (ID, message, errno, errno text, reasons) by the same
rule tables, :class:`classify.Group` and :func:`reasons.classify_openssl` as every other path
(:func:`_unit_info`), and cached.

Joining without objects. A unit is one group (:mod:`tlslog.classify`): its head opens it, its library-error lines are
absorbed. It closes when the next head of its key arrives and does not merge (``classify.MERGES``). For a key whose
block state is *resolved* (``KeyState.resolved``: every key after its first two heads of a range), the group open
for the key is kept as a light tuple in ``ctx.pending`` instead of a ``Record`` and a ``Group``; when the next unit
of the key arrives the tuple is closed into a list, emitted in bulk at the end of the block (``emit.units`` of the
scan's emitter: counts, first/last times, examples; all of them commutative, so the order of emission is free).
Pending tuples become real ``Group`` objects (:func:`_materialize`) only when something else must see them: an exact
line of the same key, a head that may merge (``MERGES``: ``proxy_try`` then ``proxy_fail``), and the end of
``process_chunks`` (:func:`flush`), where the joiner's state is handed on (``--jobs`` ranges, ``follow``).

The lexer. Finding the hits and cutting each unit and its head line into fields is :data:`lex`'s job: the C
extension ``tlslog._units`` (``analyzer/tlslog/_units.c``, built by ``pip install``) or, when it is not built or
``TLSLOG_PURE_PYTHON`` is set, :func:`_py_hits`, the regexes themselves. Both give the same tuples
(:data:`HIT_FIELDS`; tests/analyzer/test_units_lexer.py holds them equal); the C one takes 0.16 s of CPU on the 2M-line
benchmark log where the regexes take 0.49 s, because ``re`` tries its ID trie at each of the 1.9 million "AH0" of the
log, one byte at a time, where ``memmem`` and a 10,000-entry table do it at memory speed. Everything the lexer
returns is checked or interpreted here, in Python.

Everything else takes the exact path, line by line (:func:`_exact_region`: ``decode_apache`` and the joiner, the
generic loop itself): candidate lines that are no unit (other IDs, library-error lines away from their head, lines
not in the default ``ErrorLogFormat``), units whose checks fail (a continuation of another key, a second hit before
the ID, ``] SSL Library Error`` inside the head line), the first units of a key in a range (its block *prefix*), and
any head whose group may merge. tests/analyzer/test_units.py holds this equal to the generic loop on generated
interleaved, adjacent and odd lines, and checks that no candidate line is silently dropped.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from operator import attrgetter
from typing import Callable

import stringzilla

from . import decoders as _d
from .classify import CONT, EVENT, LATE_CAUSES, MERGES, Group, Joiner, Record, merges
from .decoders import Ctx

_LIBERR = b"] SSL Library Error"
#: a library-error line, strictly: stamp and level fields without brackets (so the first "[pid " and the first
#: "] SSL Library Error" of the line are these: exactly what decode_apache reads), then the key (not empty) and the
#: reason text
_CONT = r"\n\[[^\]\[\n]*\] \[[^\]\[\n]*\] \[pid ([^\]\[\n]+)\] SSL Library Error: ([^\n]*)"
#: a unit after its simple ID: the rest of the head line (group 2), up to two following library-error lines (key
#: and reason: groups 3-4, 5-6)
_UNIT = "): ([^\\n]*)(?:" + _CONT + "(?:" + _CONT + ")?)?"
_SIMPLE = sorted(k.decode()[2:] for k in _d._AH_SIMPLE)  # "02008", ...
_OTHERS = sorted(set(_d.AH_CANDIDATE_IDS) - set(_SIMPLE))
_SIMPLE_SET = {i[1:] for i in _SIMPLE}  # the four digits after "AH0"
_OTHERS_SET = {i[1:] for i in _OTHERS}
#: the common case, a block without a library-error line away from its head: every candidate message ID (the
#: literal prefix "AH0" keeps re's fast scan; every candidate ID starts with 0); a simple ID (group 1, the digits
#: after "AH0") goes on as a unit. A match starts at the ID. Library-error lines are not looked for: the block is
#: read this way only if each "SSL Library Error: " of the block is one the units took (a SIMD count).
_AP_UNITS_IDS = re.compile(("AH0(?:(" + _d._trie([i[1:] for i in _SIMPLE]) + _UNIT + "|"
                            + _d._trie([i[1:] for i in _OTHERS]) + ": )").encode())
assert all(i.startswith("0") for i in _d.AH_CANDIDATE_IDS)
#: any block: every hit of decoders._AP_CANDIDATES (a match starts at its ": "), a simple ID going on as a unit
_AP_UNITS = re.compile((": (?:(?<=AH0(" + _d._trie([i[1:] for i in _SIMPLE]) + "): )" + _UNIT[3:]
                        + "|(?<=AH" + _d._trie(list(_d.AH_CANDIDATE_IDS)) + ": )|(?<=SSL Library Error: ))").encode())
_SLE = "SSL Library Error: "
_LASTINDEX = attrgetter("lastindex")
_CACHE_MAX = 4096


class UnitInfo:
    """What a unit means, computed once per distinct (ID, message, errno, errno text, reasons) (or per pair of
    units that merged): the first head's Record fields, the last head's kind, and the group they form."""

    __slots__ = ("role", "category", "strong", "kind", "vhost", "last", "last_kind", "after", "conts", "gstrong",
                 "gweak", "gvhost", "counts", "label", "vlabel")

    def __init__(self, role: int, category: str | None, strong: bool, kind: str, vhost: str | None,
                 conts: tuple, g: Group, last: "UnitInfo | None" = None) -> None:
        self.role, self.category, self.strong, self.kind, self.vhost = role, category, strong, kind, vhost
        self.last = last  # the merged second unit (its head is the group's last head), or None
        self.last_kind = last.kind if last is not None else kind  # the kind of the group's last head
        self.after = frozenset(a for a, b in MERGES if b == kind)  # kinds of last heads this head may merge into
        self.conts = conts  # (category, strong) of each library-error line, in order
        self.gstrong, self.gweak, self.gvhost = g.strong, g.weak, g.vhost
        self.counts = g.counts  # whether the closed group is an event (Group.counts)
        self.label = g.category  # the event's category
        self.vlabel = g.vhost or ""  # the event's vhost label, as the emitter writes it

    def head(self, key: bytes | None, t: float | None, pos: int, line: bytes, src: int) -> Record:
        return Record(self.role, self.category, self.strong, key, t, self.vhost, pos, line, self.kind, "", src)

    def group(self) -> Group:
        """An empty-headed Group in this unit's state (for absorbing more records)."""
        rec = self.head(None, None, 0, b"", 0)
        return Group(rec, rec, self.gstrong, self.gweak, self.gvhost)


def library_error(msg: bytes, ctx: Ctx) -> tuple[str, bool]:
    """``b"SSL Library Error: error:..."`` -> (category, strong), as decode_apache's continuation branch reads it
    (the same cache, ``ctx.reasons``)."""
    hit = ctx.reasons.get(msg)
    if hit is None:
        category = _d.classify_openssl(msg.decode("utf-8", "replace"))[0] or "other_tls_error"
        hit = (category, category != "other_tls_error")
        if len(ctx.reasons) < _d._REASON_CACHE_MAX:
            ctx.reasons[msg] = hit
    return hit


def _unit_info(idb: bytes, body: bytes, errno: bytes | None, errtext: bytes | None, r1: bytes | None,
               r2: bytes | None, ctx: Ctx) -> UnitInfo | None:
    """The meaning of a unit (None: not one the fast path may take; the exact path reads its lines). The head's
    fields as the replaced line loop's head branch computed them; the group by classify.Group itself."""
    if _LIBERR in body:  # decode_apache would read the head line as a continuation
        return None
    rule = _d._AH_SIMPLE[b"AH0" + idb]
    if rule.role == EVENT:  # one-line events (rare) take the exact path: their library-error lines join another group
        return None
    vhost = None
    i = body.find(b"(server ")
    if i >= 0:
        j = body.find(b")", i)
        if j > i:
            vhost = body[i + 8:j].decode("utf-8", "replace")
    category, strong = rule.category, rule.strong
    if rule.timeout_category and (errno in (b"70007", b"110") or b"timed out" in body
                                  or (errtext and b"timeout" in errtext.lower())):
        category, strong = rule.timeout_category, True
    g = Group.start(Record(rule.role, category, strong, None, None, vhost, 0, b"", rule.kind))
    conts = tuple(library_error(_SLE.encode() + r, ctx) for r in (r1, r2) if r is not None)
    for cat, st in conts:
        g.absorb(Record(CONT, cat, st, None, None, None, 0, b"", "cont"))
    return UnitInfo(rule.role, category, strong, rule.kind, vhost, conts, g)


def _merged(first: UnitInfo, second: UnitInfo) -> UnitInfo:
    """The group of ``first`` after ``second`` merged into it (classify.step: last_head = the new head, absorb it,
    then its library-error lines are absorbed)."""
    g = first.group()
    g.absorb(second.head(None, None, 0, b"", 0))
    for cat, st in second.conts:
        g.absorb(Record(CONT, cat, st, None, None, None, 0, b"", "cont"))
    return UnitInfo(first.role, first.category, first.strong, first.kind, first.vhost, first.conts, g, second)


def _group(key: bytes | None, unit: tuple, src: int) -> Group:
    """A pending unit -> the Group (and head Records) the exact path would hold for ``key``."""
    info, t, pos, line = unit[:4]
    rec = info.head(key, t, pos, line, src)
    last = rec
    if info.last is not None:
        t2, pos2, line2 = unit[4:]
        last = info.last.head(key, t2, pos2, line2, src)
    return Group(rec, last, info.gstrong, info.gweak, info.gvhost)


def _materialize(keys: dict, key: bytes, unit: tuple, src: int) -> None:
    keys[key].open = _group(key, unit, src)


def _exact_region(block: bytes, a: int, b: int, base: int, ctx: Ctx, src: int, joiner: Joiner,
                  failed: Callable[[Exception, int], None]) -> None:
    """The generic loop over the candidate lines of ``block[a:b]`` (``a`` a line start, ``b`` a line end):
    decode_apache, then the joiner; a pending group of the line's key is made real first."""
    pending, keys = ctx.pending, joiner.keys
    rfind, find = block.rfind, block.find
    last = -1
    for m in _d._AP_CANDIDATES.finditer(block, a, b):
        p = m.start()
        if p <= last:
            continue
        s = rfind(b"\n", a, p) + 1 or a
        e = find(b"\n", p, b)
        if e < 0:
            e = b
        last = e
        rec = _d.decode_line(_d.decode_apache, block[s:e], base + s, ctx, src, failed)
        if rec is None:
            continue
        if rec.role == EVENT:
            joiner.emit(Group.start(rec))
            continue
        unit = pending.pop(rec.key, None)
        if unit is not None:
            _materialize(keys, rec.key, unit, src)
        joiner.feed(rec)


def _feed_unit(joiner: Joiner, ends: tuple[int, int], key: bytes, info: UnitInfo, t: float | None, block: bytes,
               s: int, e: int, base: int, src: int) -> None:
    """A unit's lines as the records decode_apache makes of them (the head, then a continuation per library-error
    line, ``ends`` their ends), fed to the joiner: for a key's block prefix and for heads that may merge
    (classify.step decides)."""
    feed = joiner.feed
    feed(info.head(key, t, base + s, block[s:e], src))
    for i, (cat, strong) in enumerate(info.conts):
        cs, ce = e + 1, ends[i]
        feed(Record(CONT, cat, strong, key, None, None, base + cs, block[cs:ce], "cont", "", src))
        e = ce


def _emit_units(joiner: Joiner, units: list, src: int) -> None:
    """Closed units -> events: the emitter's bulk form when it has one (the scan's), else one Group each."""
    many = getattr(joiner.emit, "units", None)
    if many is not None:
        many(units, src)
        return
    for unit in units:
        joiner.emit(_group(None, unit, src))


#: the fields of a hit, as the lexers (:func:`_py_hits`, ``tlslog._units.hits``) give them: the ID's position (for
#: a hit that is no unit, where its match starts), the match's end, the simple ID's digits after "AH0" (None: the
#: hit is no unit), the rest of the head line, key and reason of up to two library-error lines and their ends (-1:
#: none), the start of the hit's line; then, for a unit whose line is the strict head (``decoders._AP24_HEAD``
#: ending at the ID, no " AH" before it), its stamp and year (b"Fri Nov 27 10:50:52 2026"), the fraction as a float,
#: the key (``pid:tid``), errno and errno text; else None
HIT_FIELDS = ("p", "end", "idb", "body", "k1", "r1", "k2", "r2", "e1", "e2", "s", "skey", "frac", "key", "errno",
              "errtext")


def _hit_tuples(ms, shift: int, block: bytes, start: int) -> list[tuple]:
    """Regex matches of :data:`_AP_UNITS_IDS` (``shift`` 0) or :data:`_AP_UNITS` (7: they start at the ": " after
    the ID) -> hit tuples (:data:`HIT_FIELDS`)."""
    rfind, find = block.rfind, block.find
    head = _d._AP24_HEAD.match
    out: list[tuple] = []
    add = out.append
    for m in ms:
        p = m.start()
        idb, body, k1, r1, k2, r2 = m.groups()
        s = rfind(b"\n", start, p) + 1 or start
        if idb is None:
            add((p, m.end(), None, None, None, None, None, None, -1, -1, s, None, None, None, None, None))
            continue
        q = p - shift
        h = head(block, s, q)
        if h is None or h.end() != q or find(b" AH", s, q) >= 0:
            add((q, m.end(), idb, body, k1, r1, k2, r2, m.end(4), m.end(6), s, None, None, None, None, None))
            continue
        stamp, frac, year, key, errno, errtext = h.groups()
        add((q, m.end(), idb, body, k1, r1, k2, r2, m.end(4), m.end(6), s, stamp + b" " + year,
             None if frac is None else float(frac), key, errno, errtext))
    return out


def _py_hits(block: bytes, start: int, end: int, table: bytes = b"") -> tuple[list[tuple], int]:
    """The lexer: the hits of :data:`_AP_UNITS_IDS` in ``block[start:end]`` and how many library-error lines the
    units took. ``tlslog._units.hits`` is the same in C (``table``: see :data:`ID_TABLE`)."""
    ms = list(_AP_UNITS_IDS.finditer(block, start, end))
    lasts = Counter(map(_LASTINDEX, ms))  # 2: a unit without library-error line, 4: with one, 6: with two
    return _hit_tuples(ms, 0, block, start), lasts[4] + 2 * lasts[6]


#: the candidate IDs for the C lexer, indexed by the four digits after "AH0": 1 a simple ID (a unit), 2 another
def _id_table() -> bytes:
    table = bytearray(10000)
    for kind, ids in ((1, _SIMPLE_SET), (2, _OTHERS_SET)):
        for i in ids:
            table[int(i)] = kind
    return bytes(table)


ID_TABLE = _id_table()

try:
    if os.environ.get("TLSLOG_PURE_PYTHON"):
        raise ImportError("TLSLOG_PURE_PYTHON is set")
    from ._units import hits as _c_hits
except ImportError:  # not built (a source tree without a compiler): the same in Python, about 2x slower
    lex: Callable[[bytes, int, int, bytes], tuple[list[tuple], int]] = _py_hits
else:
    lex = _c_hits


def scan_units(block: bytes, start: int, end: int, base: int, ctx: Ctx, src: int, joiner: Joiner,
               failed: Callable[[Exception, int], None]) -> None:
    """``Format.scan_block`` of Apache 2.4 error logs: see the module docstring. Gives exactly what the generic
    loop gives once :func:`flush` has run (``process_chunks`` calls it at its end)."""
    hits, taken = lex(block, start, end, ID_TABLE)
    if taken != stringzilla.Str(block).count(_SLE, start, end):  # a library-error line away from its head
        hits = _hit_tuples(_AP_UNITS.finditer(block, start, end), 7, block, start)
    pending, keys, emit = ctx.pending, joiner.keys, joiner.emit
    ucache, mcache, seconds, clock = ctx.units, ctx.merged, ctx.seconds, ctx.clock
    find = block.find
    closed: list = []
    close = closed.append
    last_end = start - 1  # the end of the last line handled
    for p, mend, idb, body, k1, r1, k2, r2, e1, e2, s, skey, frac, key, errno, errtext in hits:
        if p <= last_end:  # a second hit in a line handled already
            if idb is not None and mend > last_end:  # ... whose match took lines beyond it: read them exactly
                _exact_region(block, last_end + 1, mend, base, ctx, src, joiner, failed)
                last_end = mend
            continue
        if idb is None:  # a candidate that is no unit: the exact path, this line
            e = find(b"\n", p, end)
            if e < 0:
                e = end
            _exact_region(block, s, e, base, ctx, src, joiner, failed)
            last_end = e
            continue
        e = last_end = mend
        if skey is None:  # not the strict head (decoders._AP24_HEAD)
            _exact_region(block, s, e, base, ctx, src, joiner, failed)
            continue
        if (k1 is not None and (k1 != key or (k2 is not None and k2 != key))) or (errtext and _LIBERR in errtext):
            _exact_region(block, s, e, base, ctx, src, joiner, failed)
            continue
        ck = (idb, body, errno, errtext, r1, r2)
        info = ucache.get(ck)
        if info is None:
            info = _unit_info(idb, body, errno, errtext, r1, r2, ctx) or False
            if len(ucache) < _CACHE_MAX:
                ucache[ck] = info
        if info is False:
            _exact_region(block, s, e, base, ctx, src, joiner, failed)
            continue
        t = seconds.get(skey)  # decoders._ap_time: the per-second cache, then the fraction
        if t is None:
            t = clock.apache(skey.decode("ascii", "replace"))
            if t is not None:
                seconds[skey] = t
        if t is not None and frac is not None:
            t += frac
        if k1 is not None:
            e = find(b"\n", p, e)
        pend = pending.get(key)
        if pend is None:
            ks = keys.get(key)
            if ks is None or not ks.resolved:  # a key's first heads in this range (its block prefix): the joiner
                _feed_unit(joiner, (e1, e2), key, info, t, block, s, e, base, src)
                continue
            g = ks.open
            if g is not None:
                if g.last_head.kind in info.after:  # may merge (MERGES): classify.step decides
                    _feed_unit(joiner, (e1, e2), key, info, t, block, s, e, base, src)
                    continue
                if g.first.kind != "late" or g.strong in LATE_CAUSES:  # Group.counts
                    emit(g)
                ks.open = None  # the group open for the key is pending[key] from here on
        else:
            first = pend[0]
            if first.last_kind in info.after:  # may merge (MERGES)
                if first.last is None and merges(first.head(key, pend[1], 0, b"", src), info.head(key, t, 0, b"", src)):
                    both = mcache.get((first, info))
                    if both is None:
                        both = _merged(first, info)
                        if len(mcache) < _CACHE_MAX:
                            mcache[(first, info)] = both
                    pending[key] = (both, pend[1], pend[2], pend[3], t, base + s, block[s:e])
                    continue
                _materialize(keys, key, pending.pop(key), src)  # classify.step decides
                _feed_unit(joiner, (e1, e2), key, info, t, block, s, e, base, src)
                continue
            if first.counts:
                close(pend)
        pending[key] = (info, t, base + s, block[s:e])
    if closed:
        _emit_units(joiner, closed, src)


def flush(ctx: Ctx, joiner: Joiner, src: int) -> None:
    """End of ``process_chunks``: every pending group becomes the joiner's real open group."""
    pending = ctx.pending
    if pending:
        keys = joiner.keys
        for key, unit in pending.items():
            _materialize(keys, key, unit, src)
        pending.clear()
