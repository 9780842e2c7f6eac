"""tlslog.follow with an injected clock: rotation by rename and by copytruncate, partial lines, globs, files that go
and come back, restarts from a positions snapshot. Every test writes real files and compares the follower's counts
with ``tlslog scan`` of the same lines in one file (the truth of the synthetic generator where it has one)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tlslog import positions, synth
from tlslog.follow import Follower, FollowOptions
from tlslog.scan import ScanOptions, scan

TZ = "UTC"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def corpus(n: int, seed: int = 7) -> tuple[list[str], Counter]:
    """``n`` synthetic Apache 2.4 error log lines (10% TLS/proxy errors) and the events they hold."""
    lines, truth = [], Counter()
    for text, category in synth.generate(n, seed=seed):
        lines.append(text + "\n")
        if category:
            truth[category] += 1
    return lines, truth


def group_ends(lines: list[str]) -> list[int]:
    """Indexes i where a cut between lines[i-1] and lines[i] does not split an event's lines."""
    cont = ("SSL Library Error:", "AH01114:")
    return [i for i in range(1, len(lines)) if not any(c in lines[i] for c in cont)]


def nonzero(totals: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in totals.items() if v}


def scan_truth(tmp: Path, lines: list[str]) -> dict:
    p = tmp / "truth.log"
    p.write_text("".join(lines))
    result = scan(ScanOptions([str(p)], tz=TZ))
    return {"events": nonzero(result.store.category_totals()), "lines": result.store.total_lines,
            "unparsed": result.store.total_unparsed}


def follower_view(f: Follower) -> dict:
    return {"events": nonzero(f.store.category_totals()), "lines": f.store.total_lines,
            "unparsed": f.store.total_unparsed}


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(lines))


def settle(f: Follower, clock: FakeClock) -> None:
    """Poll past the drain and flush delays: every rotated file let go, every open event closed."""
    f.poll()
    clock.advance(f.opts.drain_seconds + f.opts.flush_seconds + 1)
    f.poll()
    f.poll()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_partial_line_is_held_until_its_newline(tmp_path: Path, clock: FakeClock) -> None:
    log = tmp_path / "error.log"
    lines, _ = corpus(40)
    text = "".join(lines)
    cut = text.index("\n", len(text) // 2) - 10  # inside a line
    log.write_text(text[:cut])
    f = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    f.poll()
    assert f.store.total_lines == text[:cut].count("\n")  # the partial line is not a line yet
    append(log, [text[cut:]])
    f.poll()
    assert f.store.total_lines == 40
    settle(f, clock)
    assert follower_view(f) == scan_truth(tmp_path, lines)


@pytest.mark.parametrize("style", ["rename", "copytruncate"])
def test_rotations_in_both_styles_count_exactly(tmp_path: Path, clock: FakeClock, style: str) -> None:
    log = tmp_path / "app.log"
    lines, truth = corpus(6000)
    ends = group_ends(lines)
    cuts = [min(ends, key=lambda e: abs(e - k)) for k in range(500, 6000, 500)]
    f = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    start = 0
    for n, cut in enumerate(cuts, 1):
        half = (start + cut) // 2
        append(log, lines[start:half])
        f.poll()  # the follower has read half of this generation ...
        append(log, lines[half:cut])  # ... the rest is only in the file when it is rotated
        if style == "rename":
            os.rename(log, tmp_path / f"app.log.{n}")
            append(tmp_path / f"app.log.{n}", [])  # the server still has the old file open
        else:
            shutil.copyfile(log, tmp_path / f"app.log.{n}")
            os.truncate(log, 0)
        start = cut
        clock.advance(0.1)
    append(log, lines[start:])
    settle(f, clock)
    assert nonzero(f.store.category_totals()) == dict(truth)
    assert follower_view(f) == scan_truth(tmp_path, lines)
    assert f.rotations[style] == len(cuts)
    assert f.files_followed == 1


def test_rename_rotation_reads_lines_written_to_the_old_file_after_the_rename(tmp_path: Path,
                                                                              clock: FakeClock) -> None:
    log = tmp_path / "error.log"
    lines, truth = corpus(3000)
    cut = group_ends(lines)[1000]
    later = group_ends(lines)[1800]
    append(log, lines[:cut])
    f = Follower(FollowOptions([str(log)], tz=TZ, drain_seconds=5), clock=clock)
    f.poll()
    os.rename(log, tmp_path / "error.log.1")
    append(log, lines[later:])  # the new file
    f.poll()
    assert f.rotations["rename"] == 1 and f.files_followed == 2
    clock.advance(3)
    append(tmp_path / "error.log.1", lines[cut:later])  # the server wrote on until it reopened its log
    f.poll()
    clock.advance(6)
    f.poll()
    assert f.files_followed == 1  # the old file was let go after drain_seconds without growth
    settle(f, clock)
    assert nonzero(f.store.category_totals()) == dict(truth)
    assert f.store.total_lines == 3000


def test_an_event_cut_by_a_rotation_is_one_event(tmp_path: Path, clock: FakeClock) -> None:
    """As in a scan of a rotated set, AH02008 in the old file and its SSL Library Error line in the new one are
    one event (of the category the second line names), even when the head was still unread at the rotation
    (the old file is read to its end before the new one)."""
    log = tmp_path / "error.log"
    head = ("[Fri Nov 27 10:50:52.100000 2026] [ssl:info] [pid 10:tid 20] [client 192.0.2.1:5000] AH02008: SSL "
            "library error 1 in handshake (server www.example.com:443)\n")
    cont = ("[Fri Nov 27 10:50:52.100001 2026] [ssl:info] [pid 10:tid 20] SSL Library Error: error:0A000412:SSL "
            "routines::sslv3 alert bad certificate (SSL alert number 42)\n")
    log.write_text("")
    f = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    f.poll()
    append(log, [head])
    os.rename(log, tmp_path / "error.log.1")
    append(log, [cont])
    settle(f, clock)
    assert nonzero(f.store.category_totals()) == {"client_rejected_cert": 1}


def test_copytruncate_copy_matched_by_the_glob_is_not_counted_twice(tmp_path: Path, clock: FakeClock) -> None:
    log = tmp_path / "app.log"
    lines, truth = corpus(2000)
    cut = group_ends(lines)[900]
    append(log, lines[:cut])
    f = Follower(FollowOptions([str(tmp_path / "app.log*")], tz=TZ), clock=clock)
    f.poll()
    shutil.copyfile(log, tmp_path / "app.log.1")
    f.poll()  # the copy appears before the truncation: it starts like app.log, so it is a copy
    os.truncate(log, 0)
    append(log, lines[cut:])
    settle(f, clock)
    assert nonzero(f.store.category_totals()) == dict(truth)
    assert f.store.total_lines == 2000


def test_new_files_matching_the_glob_are_picked_up(tmp_path: Path, clock: FakeClock) -> None:
    lines, truth = corpus(1500)
    a, b = group_ends(lines)[500], group_ends(lines)[1000]
    append(tmp_path / "a-error.log", lines[:a])
    f = Follower(FollowOptions([str(tmp_path / "*-error.log")], tz=TZ), clock=clock)
    f.poll()
    assert f.files_followed == 1
    append(tmp_path / "b-error.log", lines[a:b])
    (tmp_path / "unrelated.txt").write_text("not matched\n")
    f.poll()
    assert f.files_followed == 2
    append(tmp_path / "c-error.log", lines[b:])
    settle(f, clock)
    assert f.files_followed == 3
    assert nonzero(f.store.category_totals()) == dict(truth)
    assert f.store.total_lines == 1500


def test_a_file_that_disappears_and_comes_back(tmp_path: Path, clock: FakeClock) -> None:
    log = tmp_path / "error.log"
    lines, truth = corpus(1200)
    a, b = group_ends(lines)[400], group_ends(lines)[800]
    append(log, lines[:a])
    f = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    f.poll()
    os.rename(log, tmp_path / "elsewhere")
    settle(f, clock)  # gone long enough to be let go
    assert f.files_followed == 0
    os.rename(tmp_path / "elsewhere", log)  # the same file comes back: not read again ...
    append(log, lines[a:b])  # ... only what was added
    f.poll()
    assert f.files_followed == 1
    os.unlink(log)
    f.poll()
    append(log, lines[b:])  # a new file under the old name
    settle(f, clock)
    assert nonzero(f.store.category_totals()) == dict(truth)
    assert f.store.total_lines == 1200


def test_restart_from_a_snapshot_changes_nothing(tmp_path: Path, clock: FakeClock) -> None:
    """Stop in the middle (open multi-line events included), rotate while stopped, restart from the snapshot."""
    log = tmp_path / "error.log"
    state = tmp_path / "positions.json"
    lines, truth = corpus(4000)
    ends = group_ends(lines)
    a, b, c = ends[1000], ends[2000], ends[3000]
    append(log, lines[:a])
    append(log, [lines[a]])  # the head of the next event (or a normal line) ...
    f1 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    f1.poll()
    append(log, ["[Fri Nov 27 10:50:52 2026] [ssl:info] [pid 1:tid 2] partial line without newl"])
    f1.poll()
    positions.save(str(state), f1.snapshot())
    f1.close()
    # while stopped: the partial line completes, more lines, a rename rotation, a new file
    with open(log, "a") as fh:
        fh.write("ine\n")
    append(log, lines[a + 1:b])
    os.rename(log, tmp_path / "error.log.1")
    append(log, lines[b:c])
    f2 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock, snapshot=positions.load(str(state)))
    f2.poll()
    append(log, lines[c:])
    settle(f2, clock)
    assert nonzero(f2.store.category_totals()) == dict(truth)
    assert f2.store.total_lines == 4000 + 1
    assert f2.rotations["rename"] == 1


def test_restart_after_copytruncate_while_stopped(tmp_path: Path, clock: FakeClock) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "positions.json"
    lines, truth = corpus(3000)
    a, b = group_ends(lines)[1000], group_ends(lines)[2000]
    append(log, lines[:a])
    f1 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    f1.poll()
    positions.save(str(state), f1.snapshot())
    f1.close()
    append(log, lines[a:b])  # only in the copy
    shutil.copyfile(log, tmp_path / "app.log-20261127")
    os.truncate(log, 0)
    append(log, lines[b:])
    f2 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock, snapshot=positions.load(str(state)))
    settle(f2, clock)
    assert nonzero(f2.store.category_totals()) == dict(truth)
    assert f2.store.total_lines == 3000
    assert f2.rotations["copytruncate"] == 1


def test_start_at_end_reads_only_what_is_added(tmp_path: Path, clock: FakeClock) -> None:
    log = tmp_path / "error.log"
    lines, _ = corpus(1000)
    a = group_ends(lines)[500]
    append(log, lines[:a])
    f = Follower(FollowOptions([str(log)], tz=TZ, start_at="end"), clock=clock)
    f.poll()
    assert f.store.total_lines == 0
    append(log, lines[a:])
    settle(f, clock)
    assert follower_view(f) == scan_truth(tmp_path, lines[a:])


def test_open_event_waits_for_its_continuation_then_flushes_when_idle(tmp_path: Path, clock: FakeClock) -> None:
    log = tmp_path / "error.log"
    head = ("[Fri Nov 27 10:50:52.100000 2026] [ssl:info] [pid 10:tid 20] [client 192.0.2.1:5000] AH02008: SSL "
            "library error 1 in handshake (server www.example.com:443)\n")
    cont = ("[Fri Nov 27 10:50:52.100001 2026] [ssl:info] [pid 10:tid 20] SSL Library Error: error:0A0000C1:SSL "
            "routines::no shared cipher\n")
    append(log, [head])
    f = Follower(FollowOptions([str(log)], tz=TZ, flush_seconds=2), clock=clock)
    f.poll()
    assert sum(f.store.category_totals().values()) == 0  # open: its cause may still follow
    clock.advance(1)
    append(log, [cont])
    f.poll()
    assert sum(f.store.category_totals().values()) == 0
    clock.advance(2.5)
    f.poll()  # idle for flush_seconds: the event is complete
    assert nonzero(f.store.category_totals()) == {"no_shared_cipher": 1}


def test_unreadable_file_is_a_read_error_said_once(tmp_path: Path, clock: FakeClock, monkeypatch) -> None:
    """EACCES on open (simulated: the suite runs as root, which reads any file) is counted and said once, not at
    every poll, and the file is read once the problem goes away."""
    log = tmp_path / "error.log"
    lines, truth = corpus(300)
    append(log, lines)
    said: list[tuple[str, str]] = []
    f = Follower(FollowOptions([str(log)], tz=TZ), clock=clock, warn=lambda p, m: said.append((p, m)))
    real_open = os.open

    def denied(path, flags, *args):
        if str(path) == str(log):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", denied)
    f.poll()
    f.poll()
    assert f.read_errors == 1
    assert said == [(str(log), "cannot open: Permission denied")]
    monkeypatch.setattr(os, "open", real_open)
    settle(f, clock)
    assert nonzero(f.store.category_totals()) == dict(truth)


def test_rename_seen_as_gone_then_created_is_one_rotation(tmp_path: Path, clock: FakeClock) -> None:
    """A poll may fall between logrotate's rename and its create: the name is empty for a moment."""
    log = tmp_path / "error.log"
    lines, truth = corpus(1000)
    a = group_ends(lines)[500]
    append(log, lines[:a])
    f = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    f.poll()
    os.rename(log, tmp_path / "error.log.1")
    f.poll()
    assert f.rotations["rename"] == 0 and f.files_followed == 1  # gone, being drained
    append(log, lines[a:])
    settle(f, clock)
    assert f.rotations["rename"] == 1
    assert nonzero(f.store.category_totals()) == dict(truth)


def test_restart_does_not_count_again_the_rotations_of_files_being_drained(tmp_path: Path,
                                                                         clock: FakeClock) -> None:
    log = tmp_path / "error.log"
    state = tmp_path / "positions.json"
    lines, truth = corpus(2000)
    ends = group_ends(lines)
    cuts = [ends[400], ends[800], ends[1200]]
    f1 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    start = 0
    for n, cut in enumerate(cuts):
        append(log, lines[start:cut])
        f1.poll()
        os.rename(log, tmp_path / f"error.log.{n}")
        start = cut
        append(log, [])
    f1.poll()
    assert f1.rotations["rename"] == 3 and f1.files_followed == 4  # three old files still draining
    positions.save(str(state), f1.snapshot())
    f1.close()
    f2 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock, snapshot=positions.load(str(state)))
    append(log, lines[start:])
    settle(f2, clock)
    assert f2.rotations["rename"] == 3
    assert nonzero(f2.store.category_totals()) == dict(truth)
    assert f2.store.total_lines == 2000


def test_event_cut_by_a_rotation_while_stopped_is_one_event(tmp_path: Path, clock: FakeClock) -> None:
    log = tmp_path / "error.log"
    state = tmp_path / "positions.json"
    head = ("[Fri Nov 27 10:50:52.100000 2026] [ssl:info] [pid 10:tid 20] [client 192.0.2.1:5000] AH02008: SSL "
            "library error 1 in handshake (server www.example.com:443)\n")
    cont = ("[Fri Nov 27 10:50:52.100001 2026] [ssl:info] [pid 10:tid 20] SSL Library Error: error:0A000102:SSL "
            "routines::unsupported protocol\n")
    lines, truth = corpus(500)
    append(log, lines)
    f1 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock)
    f1.poll()
    positions.save(str(state), f1.snapshot())
    f1.close()
    append(log, [head])  # unread when tlslog stopped
    os.rename(log, tmp_path / "error.log.1")
    append(log, [cont])
    f2 = Follower(FollowOptions([str(log)], tz=TZ), clock=clock, snapshot=positions.load(str(state)))
    settle(f2, clock)
    truth["protocol_mismatch"] += 1
    assert nonzero(f2.store.category_totals()) == dict(truth)
    assert f2.rotations["rename"] == 1
    assert f2.store.total_lines == 502


def test_compressed_rotated_files_matched_by_a_glob_are_not_followed(tmp_path: Path, clock: FakeClock) -> None:
    import gzip

    lines, truth = corpus(600)
    append(tmp_path / "error.log", lines)
    with gzip.open(tmp_path / "error.log.2.gz", "wt") as f:
        f.write("".join(corpus(300, seed=8)[0]))
    (tmp_path / "error.log.3").write_bytes(gzip.compress(b"compressed without the suffix\n"))
    said: list[tuple[str, str]] = []
    f = Follower(FollowOptions([str(tmp_path / "error.log*")], tz=TZ), clock=clock,
                 warn=lambda p, m: said.append((p, m)))
    (tmp_path / "error.log.4.gz").write_bytes(b"")  # gzip creates its file empty, then writes
    f.poll()
    (tmp_path / "error.log.4.gz").write_bytes(gzip.compress(b"x\n"))
    (tmp_path / "error.log.5").write_bytes(b"")
    f.poll()
    (tmp_path / "error.log.5").write_bytes(gzip.compress(b"y\n"))
    settle(f, clock)
    assert nonzero(f.store.category_totals()) == dict(truth)
    assert f.store.total_lines == 600
    assert sorted(Path(p).name for p, m in said if m.startswith("compressed: not followed")) == [
        "error.log.2.gz", "error.log.3", "error.log.4.gz", "error.log.5"]
    assert f.files_followed == 1
