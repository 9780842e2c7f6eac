"""Inputs: paths, directories, globs and standard input; plain, gzip, bzip2, xz and zstd; rotated sets oldest first.

* ``-`` is standard input (compressed or not).
* A directory means every regular file under it (sorted).
* A path that does not exist but contains ``*?[`` is a glob.
* Compression is recognised by its magic bytes, not by the file name (a rotated ``error_log.1`` may be gzip).
* A rotated set is read oldest first: ``error_log.3.gz, error_log.2.gz, error_log.1, error_log`` (logrotate's
  numbered and ``-YYYYMMDD`` date suffixes), so first/last times and examples come out in time order.
* Decompression runs in C (zlib, bz2, lzma, zstandard); Python only moves MiB-sized chunks.
* Errors (missing, unreadable, truncated or corrupt) are reported through a ``warn`` callback, once per file, and
  reading stops there; what was read so far counts.
"""

from __future__ import annotations

import bz2
import glob
import lzma
import os
import queue
import re
import threading
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

try:  # a declared dependency, but keep plain/gzip/bz2/xz working without it
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

RAW_CHUNK = 1 << 20
PLAIN_CHUNK = 4 << 20
Warn = Callable[[str], None]

MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_COMPRESSED_EXT = re.compile(r"\.(?:gz|bz2|xz|zst|lzma)$")
_ROTATED_NUM = re.compile(r"^(?P<base>.*?)\.(?P<n>\d{1,4})$")
_ROTATED_DATE = re.compile(r"^(?P<base>.*?)-(?P<d>\d{8}(?:\d{2})?)$")


@dataclass(frozen=True)
class Input:
    index: int
    path: str  # as named on the command line or found in a directory; "-" for standard input
    size: int | None = None  # bytes on disk (None for stdin or unknown)

    @property
    def is_stdin(self) -> bool:
        return self.path == "-"


def rotation_key(path: str) -> tuple[str, int, str]:
    """(set name, age rank, tiebreak): sorting by it puts a rotated set oldest first, the live file last.

    >>> sorted(["error_log", "error_log.1", "error_log.2.gz", "error_log.10.gz"], key=rotation_key)
    ['error_log.10.gz', 'error_log.2.gz', 'error_log.1', 'error_log']
    """
    name = _COMPRESSED_EXT.sub("", path)
    m = _ROTATED_NUM.match(name)
    if m:
        return m.group("base"), -int(m.group("n")), ""
    m = _ROTATED_DATE.match(name)
    if m:  # dated rotations: older dates first, all before the live file
        return m.group("base"), -1, m.group("d")
    return name, 0, ""


def expand(args: list[str], warn_path: Callable[[str, str], None]) -> list[Input]:
    """Command-line arguments -> ordered inputs. Unmatched globs and missing paths are warned about and kept
    (as inputs that will fail to open) so they appear in the report."""
    found: list[str] = []
    for arg in args:
        if arg == "-":
            found.append(arg)
        elif os.path.isdir(arg):
            inside = []
            for root, dirs, files in os.walk(arg):
                dirs.sort()
                inside.extend(os.path.join(root, f) for f in sorted(files))
            if not inside:
                warn_path(arg, "directory contains no files")
            found.extend(inside)
        elif not os.path.lexists(arg) and any(c in arg for c in "*?["):
            hits = sorted(p for p in glob.glob(arg, recursive=True) if not os.path.isdir(p))
            if not hits:
                warn_path(arg, "no file matches this pattern")
            found.extend(hits)
        else:
            found.append(arg)
    # order rotated sets oldest first, keep the order in which sets first appeared
    seen: dict[str, None] = {}
    for p in found:
        seen.setdefault(p, None)
    groups: dict[str, list[str]] = {}
    for p in seen:
        groups.setdefault(rotation_key(p)[0] if p != "-" else "-", []).append(p)
    ordered: list[str] = []
    for members in groups.values():
        ordered.extend(sorted(members, key=rotation_key) if len(members) > 1 else members)
    out = []
    for i, p in enumerate(ordered):
        size = None
        if p != "-":
            try:
                size = os.stat(p).st_size
            except OSError:
                size = None
        out.append(Input(i, p, size))
    return out


def compression_of(first: bytes) -> str | None:
    for magic, name in MAGIC:
        if first.startswith(magic):
            return name
    return None


def _decompressor(kind: str):
    if kind == "gzip":
        return zlib.decompressobj(31)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor()
    if kind == "zstd":
        if zstandard is None:
            raise OSError("cannot read .zst: the zstandard package is not installed (pip install zstandard)")
        return zstandard.ZstdDecompressor().decompressobj()
    raise ValueError(kind)


_CORRUPT = (zlib.error, lzma.LZMAError, EOFError, OSError, ValueError) + (
    (zstandard.ZstdError,) if zstandard is not None else ()
)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text


def decoded_chunks(f: BinaryIO, warn: Warn, *, chunk: int = RAW_CHUNK, plain_chunk: int = PLAIN_CHUNK
                   ) -> Iterator[bytes]:
    """Read ``f`` to the end, decompressing if its first bytes say so. Never raises; problems go to ``warn``.
    Uncompressed data is read ``plain_chunk`` bytes at a time (one block per read: no joining)."""
    try:
        first = f.read(chunk)
    except OSError as exc:
        warn(f"cannot read: {_describe(exc)}")
        return
    kind = compression_of(first)
    if kind is None:
        data = first
        try:
            while data:
                yield data
                data = f.read(plain_chunk)
        except OSError as exc:
            warn(f"read error: {_describe(exc)}; the rest of the file was skipped")
        return
    try:
        d = _decompressor(kind)
    except OSError as exc:
        warn(str(exc))
        return
    data = first
    produced = 0
    try:
        while True:
            while data:
                out = d.decompress(data)
                if out:
                    produced += len(out)
                    yield out
                if getattr(d, "eof", False):
                    data = d.unused_data
                    if data and data.strip(b"\x00"):  # another member/stream follows (cat a.gz b.gz)
                        d = _decompressor(kind)
                        continue
                    data = b""
                else:
                    data = b""
            data = f.read(chunk)
            if not data:
                break
        if not getattr(d, "eof", True):
            warn(f"truncated {kind} data (the compressed stream ends early, after {produced} bytes decompressed); "
                 "the lines before the cut were read")
    except _CORRUPT as exc:
        warn(f"corrupt {kind} data ({_describe(exc)}) after {produced} bytes decompressed; the rest was skipped")


def prefetched(chunks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """``chunks``, produced by a helper thread up to ``depth`` chunks ahead of the consumer.

    zlib, bz2, lzma and zstandard release the GIL while they decompress, and so does a read, so the
    decompression of the next chunks runs on another core while this thread scans the current block: a
    ``.gz`` scan then takes about max(decompress, scan) instead of their sum, as ``zcat | grep`` does with
    two processes. The consumer may stop early (close the generator): the helper stops at its next chunk and is
    joined. An exception in the producer is re-raised in the consumer (``decoded_chunks`` raises none).
    """
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for c in chunks:
                if not put(c):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    helper = threading.Thread(target=produce, name="tlslog-prefetch", daemon=True)
    helper.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        helper.join()


def file_range(path: str, start: int, end: int, warn: Warn, *, chunk: int = PLAIN_CHUNK
               ) -> tuple[int, Iterator[bytes]]:
    """The lines of a plain file whose first byte lies in ``[start, end)``: (offset of the first such line, chunks).

    Used to cut one large uncompressed file into work units: every line belongs to exactly one range, the one
    holding its first byte (the last line of a range is read past ``end`` up to its newline).
    """
    try:
        f = open(path, "rb", buffering=0)
    except OSError as exc:
        warn(f"cannot open: {_describe(exc)}")
        return start, iter(())
    pos = 0
    try:
        if start > 0:
            f.seek(start - 1)
            pos = start - 1
            while True:
                buf = f.read(65536)
                if not buf:
                    f.close()
                    return end, iter(())
                i = buf.find(b"\n")
                if i >= 0:
                    pos += i + 1
                    break
                pos += len(buf)
            f.seek(pos)
    except OSError as exc:
        f.close()
        warn(f"read error: {_describe(exc)}")
        return start, iter(())

    def gen() -> Iterator[bytes]:
        try:
            left = end - pos
            while left > 0:
                data = f.read(min(chunk, left))
                if not data:
                    return
                left -= len(data)
                if left <= 0 and not data.endswith(b"\n"):
                    yield data
                    break
                yield data
            else:
                return
            # finish the line that straddles ``end``
            while True:
                data = f.read(65536)
                if not data:
                    return
                i = data.find(b"\n")
                if i >= 0:
                    yield data[: i + 1]
                    return
                yield data
        except OSError as exc:
            warn(f"read error: {_describe(exc)}")
        finally:
            f.close()

    if pos >= end:
        f.close()
        return pos, iter(())
    return pos, gen()
