"""A neutral, mergeable store of what a scan found (mtail's idea: exporters convert it, the store knows no format).

Everything is a counter or a min/max, so stores of files, blocks, processes or Dask workers add up with
:meth:`Store.merge`, in any order, to the same result. Labels are bounded by construction: category (fixed set),
source (the log family), vhost (as the server names it; the exporters cap the number of distinct values), protocol
and cipher names (OpenSSL's, a bounded set); never a client address or a user agent.

Example::

    >>> s = Store(); s.add_event("no_shared_cipher", "apache", "www:443", 1.0, (0, 10), b"line")
    >>> t = Store(); t.add_event("no_shared_cipher", "apache", None, 0.5, (0, 5), b"earlier")
    >>> s.merge(t); s.category_totals()["no_shared_cipher"], s.first["no_shared_cipher"], s.examples["no_shared_cipher"][1]
    (2, 0.5, b'earlier')
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .catalog import CATEGORIES


@dataclass
class FileStats:
    """What one input file contributed (reported in ``files`` of the JSON output)."""

    index: int
    path: str
    format: str = "unknown"
    lines: int = 0
    unparsed_lines: int = 0
    events: int = 0
    bytes_read: int = 0
    warnings: list[str] = field(default_factory=list)
    readable: bool = True

    def merge(self, other: "FileStats") -> None:
        self.lines += other.lines
        self.unparsed_lines += other.unparsed_lines
        self.events += other.events
        self.bytes_read += other.bytes_read
        for w in other.warnings:
            if w not in self.warnings:
                self.warnings.append(w)
        self.readable = self.readable and other.readable


@dataclass
class Store:
    #: (category, source, vhost or "") -> events
    events: Counter = field(default_factory=Counter)
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    #: category -> ((file index, byte offset), line): the earliest line in input order
    examples: dict[str, tuple[tuple[int, int], bytes]] = field(default_factory=dict)
    #: source -> lines, unparsed lines
    lines: Counter = field(default_factory=Counter)
    unparsed: Counter = field(default_factory=Counter)
    #: status class ("2xx") -> requests
    status: Counter = field(default_factory=Counter)
    #: (vhost, protocol) and (vhost, cipher) -> requests
    protocols: Counter = field(default_factory=Counter)
    ciphers: Counter = field(default_factory=Counter)
    #: file index -> FileStats
    files: dict[int, FileStats] = field(default_factory=dict)

    def add_event(
        self,
        category: str,
        source: str,
        vhost: str | None,
        time: float | None,
        order: tuple[int, int],
        line: bytes,
    ) -> None:
        self.events[(category, source, vhost or "")] += 1
        if time is not None:
            f = self.first.get(category)
            if f is None or time < f:
                self.first[category] = time
            l_ = self.last.get(category)
            if l_ is None or time > l_:
                self.last[category] = time
        ex = self.examples.get(category)
        if ex is None or order < ex[0]:
            self.examples[category] = (order, line[:2000])

    def merge(self, other: "Store") -> None:
        self.events.update(other.events)
        for cat, t in other.first.items():
            if cat not in self.first or t < self.first[cat]:
                self.first[cat] = t
        for cat, t in other.last.items():
            if cat not in self.last or t > self.last[cat]:
                self.last[cat] = t
        for cat, ex in other.examples.items():
            mine = self.examples.get(cat)
            if mine is None or ex[0] < mine[0]:
                self.examples[cat] = ex
        self.lines.update(other.lines)
        self.unparsed.update(other.unparsed)
        self.status.update(other.status)
        self.protocols.update(other.protocols)
        self.ciphers.update(other.ciphers)
        for idx, fs in other.files.items():
            if idx in self.files:
                self.files[idx].merge(fs)
            else:
                self.files[idx] = fs

    # -- views used by the renderers -------------------------------------------------------------------------
    def category_totals(self) -> dict[str, int]:
        totals = dict.fromkeys(CATEGORIES, 0)
        for (cat, _src, _vh), n in self.events.items():
            totals[cat] = totals.get(cat, 0) + n
        return totals

    @property
    def total_lines(self) -> int:
        return sum(self.lines.values())

    @property
    def total_unparsed(self) -> int:
        return sum(self.unparsed.values())

    def sources(self) -> list[str]:
        seen = set(self.lines) | {src for (_c, src, _v) in self.events}
        return sorted(seen)
