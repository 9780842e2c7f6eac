"""Chunks of bytes -> blocks of whole lines (MiBs each), the partial last line carried to the next block.

A block always starts at a line start and ends just after a newline (only the very last block of an input may end
without one: a final line without its newline still counts as a line, as ``grep -c`` counts it). Lines longer than
``max_line`` bytes are not kept in memory: they are counted (``long_lines``) and skipped, so a 5 MB line of junk
costs no more than its read.

Example::

    >>> r = BlockReader(iter([b"a\\nb", b"c\\nd"]), block_size=1)
    >>> list(r)
    [(0, b'a\\n'), (2, b'bc\\n'), (5, b'd')]
"""

from __future__ import annotations

from typing import Iterable, Iterator

BLOCK_BYTES = 4 << 20
MAX_LINE_BYTES = 1 << 20


class BlockReader:
    """Iterate ``(offset of the block's first byte, block)``; ``offset`` counts from ``base``."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        base: int = 0,
        block_size: int = BLOCK_BYTES,
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        self._chunks = chunks
        self.base = base
        self.block_size = block_size
        self.max_line = max_line
        self.long_lines = 0
        self.first_long_line_offset: int | None = None

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for offset, data, end in self.views():
            yield offset, (data if end == len(data) else data[:end])

    def views(self) -> Iterator[tuple[int, bytes, int]]:
        """Like iteration, but yield ``(offset, data, end)`` with the block being ``data[:end]``: the partial line
        after ``end`` is carried without copying the block (the scan's functions all take an end bound)."""
        pending: list[bytes] = []
        pending_len = 0
        offset = self.base  # offset of pending[0][0]
        skipping = False  # inside an over-long line, discarding until its newline
        for chunk in self._chunks:
            if not chunk:
                continue
            if skipping:
                i = chunk.find(b"\n")
                if i < 0:
                    offset += len(chunk)
                    continue
                skipping = False
                self.long_lines += 1
                offset += i + 1
                chunk = chunk[i + 1:]
                if not chunk:
                    continue
            pending.append(chunk)
            pending_len += len(chunk)
            if pending_len < self.block_size:
                continue
            data = b"".join(pending) if len(pending) > 1 else pending[0]
            cut = data.rfind(b"\n") + 1
            if cut:
                yield offset, data, cut
                offset += cut
                rest = data[cut:]
            else:
                rest = data
            pending = [rest] if rest else []
            pending_len = len(rest)
            if pending_len > self.max_line:  # the carried partial line is already too long: drop it
                if self.first_long_line_offset is None:
                    self.first_long_line_offset = offset
                offset += pending_len
                pending, pending_len = [], 0
                skipping = True
        if skipping:  # the input ended inside an over-long line: it still was a line
            self.long_lines += 1
        elif pending:
            data = b"".join(pending)
            yield offset, data, len(data)
