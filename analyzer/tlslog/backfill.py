"""``tlslog backfill``: archived logs -> OpenMetrics with the events' own timestamps, for ``promtool`` to import.

Prometheus only ever sees "now" when it scrapes; old logs need their history written with timestamps. This writes
the same counter a live ``tlslog follow`` exports, ``tlslog_events_total{category, source}``, as it *would have
been* every ``--step`` from the first event to the last: at each sample time T the value is the number of events
with a timestamp <= T. Every category is present for every source (zeros included), so a PromQL ``increase()``
over any window gives the number of events in it (the range holds a sample at both its ends when the window is a
multiple of the step, so Prometheus does not need to extrapolate).

Grammar of the output (OpenMetrics 1.0 text; samples of one series in time order, as promtool requires)::

    # HELP tlslog_events TLS and proxy error events found in logs (backfilled with the events' timestamps).
    # TYPE tlslog_events counter
    tlslog_events_total{category="client_rejected_cert",source="apache"} 0 1730419200
    tlslog_events_total{category="client_rejected_cert",source="apache"} 3 1730419260
    ...
    # EOF

Then ``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR`` makes TSDB blocks (see docs/backfill.md).
Events whose line carries no time (some startup failures) cannot be placed and are left out, with a warning.
No vhost label: a year of samples per vhost would be large; use ``tlslog scan`` for per-vhost totals.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, TextIO

from . import decoders
from .catalog import CATEGORIES
from .classify import Group, Joiner
from .scan import ScanOptions, Unit, _finish_ctx, _new_ctx, plan, process_chunks
from .sources import decoded_chunks, expand
from .store import FileStats, Store

_STEP = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
#: more samples than this in one file is surely a mistake in --step (a year at 1s)
MAX_SAMPLES = 50_000_000


def parse_step(text: str) -> float:
    """``1m``, ``30s``, ``1h``, ``1d`` or plain seconds -> seconds; ValueError names the value and the grammar."""
    m = _STEP.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--step {text!r}: expected a positive duration such as 30s, 1m, 5m, 1h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class Timeline:
    """Events per (category, source, step index k): an event at time t counts from the sample at k*step >= t."""

    step: float
    buckets: Counter = field(default_factory=Counter)
    untimed: int = 0

    def add(self, category: str, source: str, t: float | None) -> None:
        if t is None:
            self.untimed += 1
            return
        self.buckets[(category, source, math.ceil(t / self.step))] += 1

    def merge(self, other: "Timeline") -> None:
        self.buckets.update(other.buckets)
        self.untimed += other.untimed


def run_unit_timeline(unit: Unit, step: float) -> tuple[Store, Timeline]:
    """Like :func:`tlslog.scan.run_unit` for a whole file, with every event's time also put in a :class:`Timeline`."""
    fmt = decoders.FORMATS.get(unit.format) if unit.format else None
    source = fmt.source if fmt else "unknown"
    store = Store()
    timeline = Timeline(step)
    stats = FileStats(unit.index, unit.path, unit.format or "unknown")
    store.files[unit.index] = stats

    def warn(msg: str) -> None:
        if msg not in stats.warnings:
            stats.warnings.append(msg)

    def emit(g: Group) -> None:
        first = g.first
        store.add_event(g.category, source, g.vhost, first.time, (unit.index, first.pos), first.line)
        stats.events += 1
        timeline.add(g.category, source, first.time)

    joiner = Joiner(emit)
    ctx = _new_ctx(unit.index, unit.tz)
    try:
        f = open(unit.path, "rb", buffering=0)
    except OSError as exc:
        warn(f"cannot open: {exc.strerror or exc}")
        stats.readable = False
        return store, timeline
    with f:
        process_chunks(decoded_chunks(f, warn), fmt, stats, store, joiner, ctx, warn=warn)
    joiner.finish()
    _finish_ctx(ctx, store, stats, source)
    return store, timeline


def _run(args: tuple[Unit, float]) -> tuple[Store, Timeline]:
    return run_unit_timeline(*args)


def collect(
    paths: list[str],
    step: float,
    *,
    input_format: str | None = None,
    tz: str | None = None,
    jobs: int = 1,
    warn: Callable[[str, str], None] | None = None,
) -> tuple[Store, Timeline]:
    """Read the inputs (files, directories, globs, compressed or not; not standard input) into a store and a
    timeline. ``warn(path, message)`` gets every problem, once."""
    say = warn or (lambda p, m: None)
    forced = decoders.lookup(input_format) if input_format else None
    inputs = [i for i in expand(paths, say) if not i.is_stdin]
    units, failed = plan(inputs, forced, ScanOptions(paths, input_format, tz, 1))
    for fs in failed.values():
        for w in fs.warnings:
            say(fs.path, w)
    store, timeline = Store(), Timeline(step)
    work = [(u, step) for u in units]
    if jobs > 1 and len(work) > 1:
        import multiprocessing

        mp = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp) as pool:
            results = list(pool.map(_run, work, chunksize=1))
    else:
        results = [_run(w) for w in work]
    for s, tl in results:
        for fs in s.files.values():
            for w in fs.warnings:
                say(fs.path, w)
        store.merge(s)
        timeline.merge(tl)
    return store, timeline


def _ts(k: int, step: float) -> str:
    t = k * step
    return str(int(t)) if float(t).is_integer() else f"{t:.3f}"


def write_openmetrics(timeline: Timeline, out: TextIO) -> int:
    """Write the cumulative counters; returns the number of samples. Nothing but ``# EOF`` if there are no events."""
    if not timeline.buckets:
        out.write("# EOF\n")
        return 0
    step = timeline.step
    ks = [k for (_c, _s, k) in timeline.buckets]
    # one sample before the first event (value 0) so that increase() counts the first events too
    k0, k1 = min(ks) - 1, max(ks)
    sources = sorted({s for (_c, s, _k) in timeline.buckets})
    per_series: dict[tuple[str, str], dict[int, int]] = {}
    for (c, s, k), n in timeline.buckets.items():
        per_series.setdefault((c, s), {})[k] = per_series.get((c, s), {}).get(k, 0) + n
    n_samples = (k1 - k0 + 1) * len(sources) * len(CATEGORIES)
    if n_samples > MAX_SAMPLES:
        raise ValueError(f"--step {step:g}s gives {n_samples} samples from {_ts(k0, step)} to {_ts(k1, step)}; "
                         f"use a longer step (at most {MAX_SAMPLES} samples)")
    out.write("# HELP tlslog_events TLS and proxy error events found in logs (backfilled with the events' "
              "timestamps).\n")
    out.write("# TYPE tlslog_events counter\n")
    written = 0
    for cat in CATEGORIES:
        for src in sources:
            series = per_series.get((cat, src), {})
            labels = f'{{category="{cat}",source="{src}"}}'
            total = 0
            lines = []
            for k in range(k0, k1 + 1):
                total += series.get(k, 0)
                lines.append(f"tlslog_events_total{labels} {total} {_ts(k, step)}\n")
            out.write("".join(lines))
            written += len(lines)
    out.write("# EOF\n")
    return written


def backfill(
    paths: list[str],
    out_path: str,
    step: float,
    *,
    input_format: str | None = None,
    tz: str | None = None,
    jobs: int = 1,
    warn: Callable[[str, str], None] | None = None,
) -> tuple[Store, Timeline, int]:
    """The whole command: read, then write ``out_path`` (via a temporary file, renamed when complete)."""
    store, timeline = collect(paths, step, input_format=input_format, tz=tz, jobs=jobs, warn=warn)
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        n = write_openmetrics(timeline, f)
    os.replace(tmp, out_path)
    return store, timeline, n
