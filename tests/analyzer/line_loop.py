"""The Apache 2.4 candidate loop that `tlslog.apache_units.scan_units` replaced (production until
commit 9f22de1): kept here, not in the analyzer, as a second reference that test_units.py compares the
fast path with (the generic loop, `scan_block=None`, is the first)."""

from __future__ import annotations

from typing import Callable

from tlslog.classify import CONT, EVENT, LATE_CAUSES, MERGES, Group, Joiner, Record, merges
from tlslog.decoders import (_AH_SIMPLE, _AP24_HEAD, _AP_CANDIDATES, _LIBERR_MSG, _REASON_CACHE_MAX, Ctx,
                             decode_apache)
from tlslog.reasons import classify_openssl


def scan_apache24(block: bytes, start: int, end: int, base: int, ctx: Ctx, src: int, joiner: Joiner,
                  failed: Callable[[Exception, int], None]) -> None:
    """The candidate loop of an Apache 2.4 error log over ``block[start:end]`` (``base + i`` is the file offset of
    ``block[i]``), the equivalent of the generic loop (candidate regexes, :func:`decode_apache` per line, the
    joiner) without its per-line costs where they are not needed:

    * one candidate pass (:data:`_AP_CANDIDATES`) gives match positions only, in order; a line is decoded once;
    * an ``SSL Library Error`` continuation line (about 40% of the candidates of a busy server) whose key has an
      open group is absorbed into that group directly: no Record, no joiner call (``classify.step`` on a CONT
      with an open group does exactly that, whatever the time: continuations carry none);
    * a head line whose ID decides its rule is read by one match of :data:`_AP24_HEAD` (time, key, errno) and
      joined in place (``classify.step`` for a HEAD on a key whose block state is resolved);
    * every other candidate line goes through :func:`decode_apache` and the joiner, as in the generic loop.
    """
    hits = [m.start() for m in _AP_CANDIDATES.finditer(block, start, end)]  # the ": " after an ID or the text
    if not hits:
        return
    rfind, find = block.rfind, block.find
    head = _AP24_HEAD.match
    keys = joiner.keys
    reasons, seconds = ctx.reasons, ctx.seconds
    feed, emit = joiner.feed, joiner.emit
    fast = _AH_SIMPLE
    last_end = -1
    for p in hits:
        if p <= last_end:  # a second hit in a line already handled
            continue
        p -= 17 if block[p - 1] == 114 else 7  # "r": "SSL Library Error: ", else "AHnnnnn: "
        s = rfind(b"\n", start, p) + 1 or start
        e = find(b"\n", p, end)
        if e < 0:
            e = end
        last_end = e
        k = find(_LIBERR_MSG, s, e)
        if k > s and block[s] == 91:
            # "[...] SSL Library Error...", whatever the hit was: decode_apache's first branch, on the block in place
            p = k + 2
            msg = block[p:e]
            hit = reasons.get(msg)
            if hit is None:
                category = classify_openssl(msg.decode("utf-8", "replace"))[0] or "other_tls_error"
                hit = (category, category != "other_tls_error")
                if len(reasons) < _REASON_CACHE_MAX:
                    reasons[msg] = hit
            i = find(b"[pid ", s, p - 1)
            if i < 0:
                key = b""
            else:
                j = find(b"]", i, p - 1)
                key = block[i + 5:j] if j >= 0 else block[i + 5:e - 1]
            ks = keys.get(key)
            if ks is not None and ks.resolved:
                g = ks.open
                if g is not None:  # Group.absorb of a CONT record (no vhost, category never None)
                    if hit[1]:
                        if g.strong is None:
                            g.strong = hit[0]
                    elif g.weak is None:
                        g.weak = hit[0]
                    continue
            feed(Record(CONT, hit[0], hit[1], key, None, None, base + s, block[s:e], "cont", "", src))
            continue
        elif k < 0 and block[p] == 65:  # a message ID ("A"), in a line that is not a continuation
            rule = fast.get(block[p:p + 7])
            if rule is not None:
                m = head(block, s, p)
                if m is not None and m.end() == p and find(b" AH", s, p) < 0:
                    stamp, frac, year, key, errno, errtext = m.groups()
                    vhost = None
                    i = find(b"(server ", p + 9, e)
                    if i >= 0:
                        j = find(b")", i, e)
                        if j > i:
                            vhost = block[i + 8:j].decode("utf-8", "replace")
                    category, strong, kind = rule.category, rule.strong, rule.kind
                    if rule.timeout_category and (  # _timed_out on bytes (ASCII words)
                            errno in (b"70007", b"110") or b"timed out" in block[p + 9:e]
                            or (errtext and b"timeout" in errtext.lower())):
                        category, strong = rule.timeout_category, True
                    skey = stamp + b" " + year  # _ap_time: the per-second cache, then the fraction
                    t = seconds.get(skey)
                    if t is None:
                        t = ctx.clock.apache(skey.decode("ascii", "replace"))
                        if t is not None:
                            seconds[skey] = t
                    if t is not None and frac is not None:
                        t += float(frac)
                    rec = Record(rule.role, category, strong, key, t, vhost, base + s, block[s:e], kind, "", src)
                    if rule.role == EVENT:
                        emit(Group.start(rec))
                        continue
                    ks = keys.get(key)
                    if ks is None or not ks.resolved:
                        feed(rec)
                        continue
                    g = ks.open  # classify.step for a HEAD on a resolved key
                    if g is not None:
                        last = g.last_head
                        if (last.kind, kind) in MERGES and merges(last, rec):
                            g.last_head = rec
                            g.absorb(rec)
                            continue
                        if g.first.kind != "late" or g.strong in LATE_CAUSES:  # Group.counts
                            emit(g)
                    ks.open = Group(rec, rec, category if strong else None, None if strong else category,
                                    vhost or None)
                    continue
        try:
            rec = decode_apache(block[s:e], base + s, ctx)
        except Exception as exc:  # a decoder bug must not end the scan (reported once per file by the caller)
            failed(exc, base + s)
            continue
        if rec is None:
            continue
        rec.src = src
        if rec.role == EVENT:
            emit(Group.start(rec))
        else:
            feed(rec)
