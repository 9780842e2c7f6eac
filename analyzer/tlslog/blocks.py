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
        for offset, data, start, end in self.views():
            yield offset, (data if start == 0 and end == len(data) else data[start:end])

    def views(self) -> Iterator[tuple[int, bytes, int, int]]:
        """Like iteration, but yield ``(offset, data, start, end)`` with the block being ``data[start:end]`` and
        ``offset`` the position of ``data[start]``: a large chunk is scanned where it lies, never copied; only the
        line that straddles two chunks is joined (the scan's functions all take start/end bounds)."""
        pending: list[bytes] = []
        pending_len = 0
        carry = b""  # the partial last line of the previous block
        offset = self.base  # offset of carry[0] (or of the next byte when carry is empty)
        skipping = False  # inside an over-long line, discarding until its newline

        def blocks_of(data: bytes):
            nonlocal carry, offset, skipping
            start = 0
            if skipping:
                i = data.find(b"\n")
                if i < 0:
                    offset += len(data)
                    return
                skipping = False
                self.long_lines += 1
                offset += i + 1
                start = i + 1
            elif carry:
                i = data.find(b"\n")
                if i < 0:
                    carry += data
                    if len(carry) > self.max_line:
                        self._long(offset)
                        offset += len(carry)
                        carry, skipping = b"", True
                    return
                head = carry + data[: i + 1]
                yield offset, head, 0, len(head)
                offset += len(head)
                carry = b""
                start = i + 1
            cut = data.rfind(b"\n", start) + 1
            if cut > start:
                yield offset, data, start, cut
                offset += cut - start
                start = cut
            carry = data[start:]
            if len(carry) > self.max_line:  # the partial line is already too long: drop it
                self._long(offset)
                offset += len(carry)
                carry, skipping = b"", True

        for chunk in self._chunks:
            if not chunk:
                continue
            pending.append(chunk)
            pending_len += len(chunk)
            if pending_len < self.block_size:
                continue
            data = b"".join(pending) if len(pending) > 1 else pending[0]
            pending, pending_len = [], 0
            yield from blocks_of(data)
        if pending:
            yield from blocks_of(b"".join(pending))
        if skipping:  # the input ended inside an over-long line: it still was a line
            self.long_lines += 1
        elif carry:
            yield offset, carry, 0, len(carry)

    def _long(self, offset: int) -> None:
        if self.first_long_line_offset is None:
            self.first_long_line_offset = offset
