"""How ``tlslog scan --jobs N`` splits its inputs into work units: as few as keep N workers evenly loaded.

Pure (sizes in, pieces out, no I/O), so the choice can be tested for any set of file sizes. The scan
(:func:`tlslog.scan.plan`) turns the pieces into :class:`~tlslog.scan.Unit` objects.

Theory of operation. Every unit has a cost of its own (its caches start cold, its result is pickled, sent and merged
by the parent: 3-35 ms measured in docs/analyzer-speed.md, round of task h20), so fewer units are better as long as
the workers finish together. The workers take units from one queue, biggest first (longest processing time first,
LPT; Graham 1969: within 4/3 of the optimum, and exact for the common cases below). So:

1. ``jobs == 1``: every file whole, in input order (nothing to balance).
2. ``max_range`` given (``--jobs`` has no option for it; tests and ``tlslog.distributed``'s callers use it): a fixed
   split, every plain file in ``ceil(size / max_range)`` equal ranges, nothing else.
3. Otherwise the first of these candidates whose LPT schedule ends within ``BALANCE`` of the ideal (``total /
   jobs``, or the largest piece that cannot be cut), else the best of them:
   whole files; McNaughton's wrap-around (the plain files end to end, cut where a worker's share is full: at most
   ``jobs - 1`` cuts); the plain files in equal ranges of ``total / (jobs * k)`` for k = 1 ... ``MAX_SPLIT``. No
   range is made smaller than ``min_range`` for balance's sake.
   Two files of equal size on two workers: two whole files. One file: two halves. Three equal files: two whole
   files and the halves of the third.

Compressed files are never cut (a range of a compressed stream cannot be decoded on its own); their weight is their
estimated decompressed size (gzip's trailer when it is plausible, else the on-disk size times a typical ratio), so
that one big ``.gz`` is started first and plain ranges fill in around it.

Example::

    >>> [(p.index, p.start, p.end) for p in schedule([Piece(0, 100), Piece(1, 100)], jobs=2, min_range=10)]
    [(0, 0, None), (1, 0, None)]
    >>> [(p.index, p.start, p.end) for p in schedule([Piece(0, 100)], jobs=2, min_range=10)]
    [(0, 0, 50), (0, 50, 100)]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

#: no range is made smaller than this for balance (an explicit ``max_range`` below it wins): a range costs a few ms
#: of its own, 16 MiB is ~20-40 ms of scanning, and an input this small gains little from a second process anyway
MIN_RANGE_BYTES = 16 << 20
#: a schedule whose busiest worker ends within this fraction of the ideal is taken (fewer units beat a closer fit)
BALANCE = 0.03
#: the largest k tried (ranges of total / (jobs * k)): beyond it the gain is below the per-unit cost
MAX_SPLIT = 8
#: decompressed bytes per compressed byte when the file does not say (gzip -6 on the synthetic 2M-line Apache log:
#: 8.9; real error logs 5-15); only orders the work, never changes a result
EXPANSION = {"gzip": 9, "bzip2": 12, "xz": 12, "zstd": 10}


@dataclass(frozen=True)
class Piece:
    """An input (``end is None``: whole) or a byte range ``[start, end)`` of it; ``weight`` estimates its cost in
    plain bytes (``size`` itself for a plain file)."""

    index: int
    size: int  # bytes on disk of the whole input
    cuttable: bool = True  # plain (uncompressed) regular file
    weight: int | None = None  # None: size
    start: int = 0
    end: int | None = None

    @property
    def cost(self) -> int:
        if self.end is not None:
            return self.end - self.start
        return self.size if self.weight is None else self.weight


def makespan(costs: list[int], jobs: int) -> int:
    """When the last of ``jobs`` workers ends if each takes the next cost from the list when it is free."""
    free = [0] * max(1, jobs)
    for c in costs:
        heapq.heapreplace(free, free[0] + c)
    return max(free)


def _ranges(p: Piece, start: int, end: int, n: int) -> list[Piece]:
    """``[start, end)`` of ``p`` in ``n`` equal ranges (no short rest that ends last); the whole file when that is
    what is asked."""
    if n <= 1 and start == 0 and end == p.size:
        return [p]
    n = max(1, n)
    cuts = [start + (end - start) * i // n for i in range(n + 1)]
    return [Piece(p.index, p.size, True, None, cuts[i], cuts[i + 1]) for i in range(n)]


def _lpt(pieces: list[Piece]) -> list[Piece]:
    """Biggest first; ties in input and file order (deterministic)."""
    return sorted(pieces, key=lambda p: (-p.cost, p.index, p.start))


def _equal_cuts(base: list[Piece], target: int | None, cap: int | None, floor: int) -> list[Piece]:
    """Every plain file in equal ranges of at most ``target`` (None: whole) and ``cap`` bytes, none below
    ``floor`` for the target's sake."""
    out: list[Piece] = []
    for p in base:
        if not p.cuttable or p.size <= 0:
            out.append(p)
            continue
        n = -(-p.size // cap) if cap else 1  # the cap first
        if target is not None and p.size > target:  # as many as the target asks, none below the floor
            n = max(n, min(-(-p.size // target), p.size // floor))
        out.extend(_ranges(p, 0, p.size, n))
    return out


def _wrap_around(base: list[Piece], jobs: int, ideal: int, floor: int) -> list[Piece]:
    """McNaughton's wrap-around (1959): the pieces that cannot be cut go to the workers biggest first, then the
    plain files, biggest first, are laid end to end and cut where a worker's share (``ideal``) is full: at most
    ``jobs - 1`` cuts, so at most ``files + jobs - 1`` pieces. A cut that would leave a piece below ``floor`` is
    not made."""
    loads = [0] * jobs
    fixed = [p for p in base if not p.cuttable or p.size <= 0]
    for p in sorted(fixed, key=lambda p: -p.cost):
        loads[loads.index(min(loads))] += p.cost
    bounds = []  # where each worker's share of the plain bytes ends, in the concatenation
    acc = 0
    for load in loads[:-1]:
        acc += max(0, ideal - load)
        bounds.append(acc)
    out = list(fixed)
    pos = 0
    for p in sorted((p for p in base if p.cuttable and p.size > 0), key=lambda p: (-p.size, p.index)):
        cuts = [0]
        for b in bounds:
            c = b - pos
            if c - cuts[-1] >= floor and p.size - c >= floor:  # else no cut here: a piece grows instead
                cuts.append(c)
        cuts.append(p.size)
        for s0, e0 in zip(cuts, cuts[1:]):
            out.extend(_ranges(p, s0, e0, 1))
        pos += p.size
    return out


def schedule(inputs: list[Piece], jobs: int, *, max_range: int | None = None,
             min_range: int = MIN_RANGE_BYTES) -> list[Piece]:
    """The pieces to run, in the order to hand them out (see the module's docstring)."""
    if jobs <= 1 or not inputs:
        return list(inputs)
    base = list(inputs)
    if max_range:  # a fixed split, asked for: every plain file in ceil(size / max_range) equal ranges
        return _lpt(_equal_cuts(base, None, max_range, 1))
    floor = min_range
    total = sum(p.cost for p in base)
    fixed = max((p.cost for p in base if not p.cuttable), default=0)
    ideal = max(-(-total // jobs), fixed)
    good = ideal * (1 + BALANCE)

    def candidates():
        yield _equal_cuts(base, None, None, floor)
        yield _wrap_around(base, jobs, ideal, floor)
        for k in range(1, MAX_SPLIT + 1):
            target = max(total // (jobs * k), floor, 1)
            yield _equal_cuts(base, target, None, floor)
            if target == floor:  # smaller ranges are not made
                return

    best: list[Piece] = []
    best_key = None
    for cand in candidates():
        cand = _lpt(cand)
        span = makespan([p.cost for p in cand], jobs)
        if span <= good:
            return cand  # the first that balances: the candidates come with more pieces as they go
        key = (span, len(cand))
        if best_key is None or key < best_key:
            best, best_key = cand, key
    return best
