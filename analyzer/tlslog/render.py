"""Scan results as JSON (the shape of issue 3, exactly) and as a readable table.

JSON::

    {"events": {"<category>": N, ... every category, in catalog order ...},
     "lines": N, "unparsed_lines": N,
     "files": [{"path": ..., "format": ..., "lines": N, "unparsed_lines": N, "events": N, "warnings": [...]}],
     "protocols": {"<vhost>": {"protocols": {"TLSv1.2": N, ...}, "ciphers": {"ECDHE-RSA-AES128-GCM-SHA256": N}}},
     "status": {"1xx": N, "2xx": N, "3xx": N, "4xx": N, "5xx": N}}

``protocols`` is keyed by vhost ("-" when the log does not name it): how many requests still use TLS 1.0 or RC4
per vhost, the numbers needed before turning a protocol off.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from .catalog import CATALOG, CATEGORIES
from .scan import ScanResult


def to_json_obj(result: ScanResult) -> dict:
    store = result.store
    protocols: dict[str, dict[str, dict[str, int]]] = {}
    for (vh, p), n in sorted(store.protocols.items()):
        protocols.setdefault(vh, {"protocols": {}, "ciphers": {}})["protocols"][p] = n
    for (vh, c), n in sorted(store.ciphers.items()):
        protocols.setdefault(vh, {"protocols": {}, "ciphers": {}})["ciphers"][c] = n
    return {
        "events": store.category_totals(),
        "lines": store.total_lines,
        "unparsed_lines": store.total_unparsed,
        "files": [
            {
                "path": fs.path,
                "format": fs.format,
                "lines": fs.lines,
                "unparsed_lines": fs.unparsed_lines,
                "events": fs.events,
                "warnings": list(fs.warnings),
            }
            for fs in result.files
        ],
        "protocols": protocols,
        "status": {cls: store.status.get(cls, 0) for cls in ("1xx", "2xx", "3xx", "4xx", "5xx")},
    }


def render_json(result: ScanResult) -> str:
    return json.dumps(to_json_obj(result), indent=2) + "\n"


def _fmt_time(t: float | None, tz: str | None) -> str:
    if t is None:
        return "-"
    zone = ZoneInfo(tz) if tz else None
    moment = dt.datetime.fromtimestamp(t, zone) if zone else dt.datetime.fromtimestamp(t).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(result: ScanResult, *, tz: str | None = None, width: int = 120) -> str:
    store = result.store
    totals = store.category_totals()
    n_events = sum(totals.values())
    files = result.files
    out = [
        f"tlslog scan: {len(files)} file(s), {store.total_lines:,} lines ({store.total_unparsed:,} not understood), "
        f"{n_events:,} event(s)",
        "",
    ]
    if n_events:
        out.append(f"{'CATEGORY':<26}{'EVENTS':>8}  {'FIRST':<25}{'LAST':<25}")
        for cat in CATEGORIES:
            n = totals[cat]
            if not n:
                continue
            out.append(f"{cat:<26}{n:>8,}  {_fmt_time(store.first.get(cat), tz):<25}"
                       f"{_fmt_time(store.last.get(cat), tz):<25}")
            ex = store.examples.get(cat)
            if ex:
                out.append("    example: " + _clip(ex[1].decode("utf-8", "replace").strip(), width - 13))
            out.append("    what:    " + CATALOG[cat].description)
            out.append("    remedy:  " + CATALOG[cat].remedy)
        out.append("")
    else:
        out.append("no TLS or proxy error events found")
        out.append("")
    if any(store.status.values()):
        out.append("requests by status: " + "  ".join(
            f"{cls} {store.status.get(cls, 0):,}" for cls in ("1xx", "2xx", "3xx", "4xx", "5xx")))
        out.append("")
    if store.protocols:
        out.append("TLS protocols and ciphers per vhost:")
        vhosts = sorted({vh for vh, _ in store.protocols})
        for vh in vhosts:
            protos = sorted((p, n) for (v, p), n in store.protocols.items() if v == vh)
            ciphers = sorted(((c, n) for (v, c), n in store.ciphers.items() if v == vh), key=lambda x: -x[1])
            out.append(f"  {vh}: " + "  ".join(f"{p} {n:,}" for p, n in protos))
            out.append("      ciphers: " + _clip(", ".join(f"{c} {n:,}" for c, n in ciphers), width - 15))
        out.append("")
    out.append(f"{'FILE':<50} {'FORMAT':<15}{'LINES':>12}{'UNPARSED':>10}{'EVENTS':>8}")
    for fs in files:
        out.append(f"{_clip(fs.path, 50):<50} {fs.format:<15}{fs.lines:>12,}{fs.unparsed_lines:>10,}{fs.events:>8,}")
        for w in fs.warnings:
            out.append(f"    warning: {w}")
    return "\n".join(out) + "\n"
