"""tlslog.positions: the snapshot round-trips (store, open events), is replaced atomically, and a damaged file is a
clear error naming it, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tlslog import positions
from tlslog.classify import CONT, HEAD, Joiner, Record
from tlslog.positions import FileEntry, PositionsError, Snapshot
from tlslog.store import Store


def sample_store() -> Store:
    s = Store()
    s.add_event("no_shared_cipher", "apache", "www.example.com:443", 1795000000.5, (0, 10), b"line")
    s.add_event("client_rejected_cert", "nginx", None, 1795000100.0, (1, 0), b"other")
    s.lines.update({"apache": 10, "nginx": 4})
    s.unparsed.update({"apache": 2})
    s.status.update({"2xx": 7, "5xx": 1})
    s.protocols[("www:443", "TLSv1")] += 3
    s.ciphers[("www:443", "RC4-SHA")] += 3
    return s


def test_store_round_trip() -> None:
    s = sample_store()
    t = positions.store_from_json(json.loads(json.dumps(positions.store_to_json(s))))
    assert t.events == s.events
    assert (t.first, t.last) == (s.first, s.last)
    assert (t.lines, t.unparsed, t.status, t.protocols, t.ciphers) == (s.lines, s.unparsed, s.status, s.protocols,
                                                                        s.ciphers)


def test_open_events_round_trip_and_finish_the_same() -> None:
    """A joiner holding an open AH02008 (bytes that are not UTF-8 included) finishes identically after a JSON trip."""
    head = Record(HEAD, "other_tls_error", False, (b"10", "20"), 5.0, "www:443", 100, b"AH02008 \xff\xfe", "conn")
    cont = Record(CONT, "client_rejected_cert", True, (b"10", "20"), None, None, 200, b"SSL Library Error", "cont")
    solo_prefix = Record(CONT, "no_shared_cipher", True, b"11:12", None, None, 300, b"orphan", "cont", b"d")
    out_a: list = []
    a = Joiner(lambda g: out_a.append((g.category, g.vhost, g.first.line)))
    for r in (head, cont, solo_prefix):
        a.feed(r)
    data = json.loads(json.dumps(positions.joiner_keys_to_json(a.keys)))
    out_b: list = []
    b = Joiner(lambda g: out_b.append((g.category, g.vhost, g.first.line)))
    b.keys = positions.joiner_keys_from_json(data)
    a.finish()
    b.finish()
    assert out_b == out_a == [("client_rejected_cert", "www:443", b"AH02008 \xff\xfe"),
                              ("no_shared_cipher", None, b"orphan")]


def test_save_load_and_atomic_replacement(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    snap = Snapshot([FileEntry(1, 2, "/var/log/x", 300, 256, "ab" * 32, "apache_error", [], False),
                     FileEntry(1, 3, "/var/log/x.1", 900, 256, "cd" * 32, None, None, True)],
                    sample_store(), {"rotations": {"rename": 2}, "read_errors": 1}, 12.5)
    positions.save(str(path), snap)
    positions.save(str(path), snap)  # replacing an existing file
    assert sorted(os.listdir(tmp_path)) == ["positions.json"]  # no temporary file left behind
    back = positions.load(str(path))
    assert back is not None
    assert [(f.ino, f.offset, f.closed) for f in back.files] == [(2, 300, False), (3, 900, True)]
    assert back.counters == {"rotations": {"rename": 2}, "read_errors": 1}
    assert back.store.events == snap.store.events
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_missing_file_is_a_first_run(tmp_path: Path) -> None:
    assert positions.load(str(tmp_path / "none.json")) is None


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"version": 99}', b'{"version": 1, "files": [{"dev": 1}]}',
     b'{"version": 1, "files": [], "counters": []}'],
    ids=["garbage", "list", "future-version", "entry-missing-fields", "counters-not-object"],
)
def test_damaged_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "positions.json"
    path.write_bytes(content)
    with pytest.raises(PositionsError) as err:
        positions.load(str(path))
    msg = str(err.value)
    assert msg.startswith(f"--positions {path}: not a tlslog positions file (")
    assert "move it away to start afresh" in msg


def test_fingerprint(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 300)
    fd = os.open(p, os.O_RDONLY)
    try:
        n, fp = positions.fingerprint_fd(fd)
        assert n == positions.FP_BYTES
        assert positions.fingerprint_matches(fd, n, fp)
        assert positions.fingerprint_matches(fd, 0, "")
        assert not positions.fingerprint_matches(fd, n, "0" * 64)
        assert not positions.fingerprint_matches(fd, 400, fp)  # the file is shorter than the fingerprint
    finally:
        os.close(fd)
