"""Line numbers for key paths in a TOML file (tomllib gives values, not positions).

A best-effort scan of the text, enough for tlsfront's schema: table headers
(`[server]`, `[[vhost]]`, `[vhost.tls]`, `[[quirk]]`), `key = value` lines, and
inline tables (`tls = { certificate = "...", key = "..." }`). A key path such
as `vhost[2].tls.key[1]` maps to the line of `key` inside the third `[[vhost]]`'s
`tls`; a key that is not written (a missing one) maps to its table's header.
When nothing fits, there is no line: the key path alone still says where.

Example::

    >>> Lines('[[vhost]]\\nlisten = "x"\\n[[vhost]]\\nlisten = "y"\\n').line("vhost[1].listen")
    4
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

_HEADER = re.compile(r"^\s*(\[\[|\[)\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*(\]\]|\])\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")
_INLINE_KEYS = re.compile(r"([A-Za-z0-9_\-]+)\s*=")
_INDEX = re.compile(r"\[\d+\]$")


def toml_lines(text: str) -> list[str]:
    """The lines of a TOML document as TOML counts them (and tomllib's error positions, and
    editors): a newline is LF or CRLF. Not `str.splitlines()`, which also breaks at U+2028,
    U+0085, FF, VT and more, all allowed in TOML comments and strings: one of them shifted
    every later line number by one.

    >>> toml_lines('a = 1 # x\\u2028y\\r\\nb = 2\\n')
    ['a = 1 # x\\u2028y', 'b = 2', '']
    """
    return [line.removesuffix("\r") for line in text.split("\n")]


class Lines:
    """Key path -> 1-based line number, from the text of a TOML file."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        current = ""  # the key path of the current table, e.g. "vhost[1].tls"
        for n, line in enumerate(toml_lines(text), start=1):
            header = _HEADER.match(line)
            if header and len(header.group(1)) == len(header.group(3)):
                name = re.sub(r"\s+", "", header.group(2))
                if header.group(1) == "[[":
                    counters[name] = counters.get(name, -1) + 1
                current = self._indexed(name, counters)
                self._lines.setdefault(current, n)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            name = key.group(1)
            path = f"{current}.{name}" if current else name
            self._lines.setdefault(path, n)
            rest = line[key.end():]
            if rest.lstrip().startswith("{"):
                for inner in _INLINE_KEYS.findall(rest):
                    self._lines.setdefault(f"{path}.{inner}", n)

    @staticmethod
    def _indexed(name: str, counters: dict[str, int]) -> str:
        """`vhost.tls` inside the second [[vhost]] -> `vhost[1].tls`."""
        parts = name.split(".")
        out = []
        prefix = ""
        for part in parts:
            prefix = f"{prefix}.{part}" if prefix else part
            out.append(f"{part}[{counters[prefix]}]" if prefix in counters else part)
        return ".".join(out)

    def line(self, keypath: str) -> int | None:
        """The line of `keypath` (list indexes dropped), else of its nearest written parent."""
        path = keypath
        while path:
            stripped = _INDEX.sub("", path)
            if stripped in self._lines:
                return self._lines[stripped]
            if path in self._lines:
                return self._lines[path]
            if "." not in stripped:
                return self._lines.get(stripped)
            path = stripped.rsplit(".", 1)[0]
        return None


@lru_cache(maxsize=16)
def _lines_of(path: str, mtime_ns: int) -> Lines | None:
    try:
        return Lines(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def line_of(path: Path, keypath: str) -> int | None:
    """The line of `keypath` in the file at `path` (None when unknown)."""
    try:
        mtime = Path(path).stat().st_mtime_ns
    except OSError:
        return None
    lines = _lines_of(str(path), mtime)
    return lines.line(keypath) if lines is not None else None
