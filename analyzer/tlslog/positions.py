"""``--positions FILE``: how far ``tlslog follow`` read each file, and what it had counted by then.

Why a file is known by device and inode, not by name: rotation renames files (``error_log`` becomes
``error_log.1``) and creates new ones under the old name, so a name says nothing about content. An inode can be
reused once its file is deleted, so each entry also keeps a *fingerprint*: the SHA-256 of the file's first
``fp_len`` bytes (at most :data:`FP_BYTES`). A file whose first bytes no longer hash to it is not the file we read
(a reused inode, or a copytruncate that emptied it and started again).

Why counts are in the same file: the offsets and the counters exported on /metrics must describe the same moment,
or a restart would count the lines between the two twice (or never). So one snapshot holds both, together with the
events still open (an Apache ``AH02008`` whose ``SSL Library Error:`` lines may follow), and it is replaced
atomically (write a temporary file in the same directory, fsync, rename over, fsync the directory), so a crash
leaves the previous snapshot or the new one, never a mix.

Grammar (JSON, version 1)::

    {"version": 1, "saved_at": 1795000000.0,
     "files": [{"dev": 2049, "ino": 1234, "path": "/var/log/apache2/error.log", "offset": 123456,
                "fp_len": 256, "fp": "<sha256 hex>", "format": "apache_error", "joiner": [...], "closed": false,
                "draining": false}],
     "store": {...}, "counters": {"rotations": {"rename": 3}, "read_errors": 0}}

Example::

    >>> from tlslog.store import Store
    >>> s = Store(); s.add_event("no_shared_cipher", "apache", "www:443", 1.0, (0, 0), b"x"); s.lines["apache"] = 2
    >>> store_from_json(store_to_json(s)).events[("no_shared_cipher", "apache", "www:443")]
    1
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .classify import Group, KeyState, Record
from .store import Store

VERSION = 1
#: bytes of a file's start that identify it; a timestamped log line is rarely shorter
FP_BYTES = 256


class PositionsError(Exception):
    """A positions file that cannot be used; the message names the file, the problem and the fix."""


# -- fingerprints ------------------------------------------------------------------------------------------------

def fingerprint_fd(fd: int, length: int = FP_BYTES) -> tuple[int, str]:
    """(bytes hashed, sha256 hex) of the first ``length`` bytes of an open file (fewer if it is shorter)."""
    head = os.pread(fd, length, 0)
    return len(head), hashlib.sha256(head).hexdigest()


def fingerprint_matches(fd: int, fp_len: int, fp: str) -> bool:
    """Whether the file's first ``fp_len`` bytes still hash to ``fp`` (an empty fingerprint matches anything)."""
    if fp_len == 0:
        return True
    head = os.pread(fd, fp_len, 0)
    return len(head) == fp_len and hashlib.sha256(head).hexdigest() == fp


# -- the store and open groups as JSON ---------------------------------------------------------------------------

def _pairs(counter: Counter) -> list[list[Any]]:
    return [[*k, n] if isinstance(k, tuple) else [k, n] for k, n in sorted(counter.items()) if n]


def store_to_json(store: Store) -> dict[str, Any]:
    """The counters of a :class:`Store` (not the examples or per-file stats, which follow mode does not export)."""
    return {
        "events": _pairs(store.events),
        "first": dict(store.first),
        "last": dict(store.last),
        "lines": _pairs(store.lines),
        "unparsed": _pairs(store.unparsed),
        "status": _pairs(store.status),
        "protocols": _pairs(store.protocols),
        "ciphers": _pairs(store.ciphers),
    }


def store_from_json(obj: dict[str, Any]) -> Store:
    s = Store()
    for *k, n in obj.get("events", []):
        s.events[tuple(k)] += int(n)
    s.first.update({c: float(t) for c, t in obj.get("first", {}).items()})
    s.last.update({c: float(t) for c, t in obj.get("last", {}).items()})
    for name in ("lines", "unparsed", "status"):
        target: Counter = getattr(s, name)
        for k, n in obj.get(name, []):
            target[k] += int(n)
    for name in ("protocols", "ciphers"):
        target = getattr(s, name)
        for a, b, n in obj.get(name, []):
            target[(a, b)] += int(n)
    return s


def _key_out(v: Any) -> Any:
    """A joining key (or detail) as JSON: the decoders use str, bytes, tuples of them, or None."""
    if isinstance(v, tuple):
        return {"t": [_key_out(x) for x in v]}
    if isinstance(v, bytes):
        return {"b": v.decode("latin-1")}
    return v


def _key_in(v: Any) -> Any:
    if isinstance(v, dict):
        if "t" in v:
            return tuple(_key_in(x) for x in v["t"])
        return str(v["b"]).encode("latin-1")
    if isinstance(v, list):  # written by an earlier version
        return tuple(v)
    return v


def record_to_json(r: Record) -> list[Any]:
    # the line is kept as latin-1 text: a lossless bytes<->str mapping that JSON can carry
    return [r.role, r.category, r.strong, _key_out(r.key), r.time, r.vhost, r.pos, r.line.decode("latin-1"), r.kind,
            _key_out(r.detail)]


def record_from_json(v: list[Any]) -> Record:
    role, category, strong, key, time, vhost, pos, line, kind, detail = v
    return Record(role, category, strong, _key_in(key), time, vhost, pos, line.encode("latin-1"), kind,
                  _key_in(detail))


def _group_to_json(g: Group | None) -> dict[str, Any] | None:
    if g is None:
        return None
    return {"first": record_to_json(g.first), "last_head": record_to_json(g.last_head), "strong": g.strong,
            "weak": g.weak, "vhost": g.vhost}


def _group_from_json(v: dict[str, Any] | None) -> Group | None:
    if v is None:
        return None
    return Group(record_from_json(v["first"]), record_from_json(v["last_head"]), v["strong"], v["weak"], v["vhost"])


def joiner_keys_to_json(keys: dict[Any, KeyState]) -> list[list[Any]]:
    """The groups a :class:`~tlslog.classify.Joiner` holds open, per key."""
    out = []
    for key, ks in keys.items():
        out.append([
            _key_out(key),
            [record_to_json(r) for r in ks.prefix],
            ks.resolved,
            _group_to_json(ks.open),
            record_to_json(ks.prefix_last_head) if ks.prefix_last_head is not None else None,
        ])
    return out


def joiner_keys_from_json(v: list[list[Any]]) -> dict[Any, KeyState]:
    keys: dict[Any, KeyState] = {}
    for key, prefix, resolved, open_, plh in v:
        keys[_key_in(key)] = KeyState(
            [record_from_json(r) for r in prefix], bool(resolved), _group_from_json(open_),
            record_from_json(plh) if plh is not None else None)
    return keys


# -- the file ----------------------------------------------------------------------------------------------------

@dataclass
class FileEntry:
    """Where one file (by device and inode) was read up to: ``offset`` is the end of the last complete line."""

    dev: int
    ino: int
    path: str
    offset: int
    fp_len: int
    fp: str
    format: str | None = None
    joiner: list[list[Any]] | None = None
    #: read to its end and let go (a rotated file): kept so that it is not read again if a glob matches it
    closed: bool = False
    #: no longer under a followed name (rotated away or deleted), still being read to its end
    draining: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"dev": self.dev, "ino": self.ino, "path": self.path, "offset": self.offset, "fp_len": self.fp_len,
                "fp": self.fp, "format": self.format, "joiner": self.joiner or [], "closed": self.closed,
                "draining": self.draining}

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> "FileEntry":
        return cls(int(v["dev"]), int(v["ino"]), str(v["path"]), int(v["offset"]), int(v["fp_len"]), str(v["fp"]),
                   v.get("format"), v.get("joiner") or [], bool(v.get("closed", False)),
                   bool(v.get("draining", False)))


@dataclass
class Snapshot:
    files: list[FileEntry]
    store: Store
    counters: dict[str, Any]
    saved_at: float = 0.0


def load(path: str) -> Snapshot | None:
    """Read a positions file; None if it does not exist yet (the first run). Raises :class:`PositionsError`."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PositionsError(f"--positions {path}: cannot read: {exc.strerror or exc}; fix its permissions or "
                             "name another file") from None
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("version") != VERSION:
            raise ValueError(f"version {obj.get('version') if isinstance(obj, dict) else None!r}, expected {VERSION}")
        files = [FileEntry.from_json(v) for v in obj.get("files", [])]
        # exercise the decoders now so that a damaged file fails here, with its name, not later
        for fe in files:
            joiner_keys_from_json(fe.joiner or [])
        store = store_from_json(obj.get("store", {}))
        counters = obj.get("counters", {})
        if not isinstance(counters, dict):
            raise ValueError("'counters' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise PositionsError(f"--positions {path}: not a tlslog positions file ({exc}); move it away to start "
                             "afresh (files would then be read again from their start)") from None
    return Snapshot(files, store, counters, float(obj.get("saved_at", 0.0)))


def save(path: str, snap: Snapshot) -> None:
    """Replace ``path`` atomically with ``snap``: temporary file in the same directory, fsync, rename, fsync dir."""
    obj = {
        "version": VERSION,
        "saved_at": snap.saved_at,
        "files": [fe.to_json() for fe in snap.files],
        "store": store_to_json(snap.store),
        "counters": snap.counters,
    }
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode())


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part (rename(2) is
    atomic within a file system; the fsyncs make it survive a power cut)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
