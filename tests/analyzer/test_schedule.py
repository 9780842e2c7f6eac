"""``--jobs`` scheduling: which units are made for given file sizes and jobs (tlslog.schedule), that every schedule
gives the same answer (tlslog.scan), and the fork workers (tlslog.workers): order, errors, dead workers, Ctrl-C."""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlslog import synth, workers
from tlslog.render import to_json_obj
from tlslog.scan import ScanOptions, merge_stream, plan, run_unit, scan
from tlslog.schedule import BALANCE, MIN_RANGE_BYTES, Piece, makespan, schedule
from tlslog.sources import expand

M = 1 << 20


def shape(pieces: list[Piece]) -> list[tuple[int, int]]:
    """(input index, cost in MiB) of each piece, in the order they are handed out."""
    return [(p.index, p.cost // M) for p in pieces]


# (sizes in MiB, plain?, jobs, expected pieces in order); the figures of the benchmark are 372 MB files
CASES = [
    ([372, 372], None, 2, [(0, 372), (1, 372)]),
    ([372], None, 2, [(0, 186), (0, 186)]),
    # three files on two workers: one whole file each, the third cut in two halves (not six ranges)
    ([300, 300, 300], None, 2, [(0, 300), (2, 300), (1, 150), (1, 150)]),
    ([372, 372], None, 4, [(0, 186), (0, 186), (1, 186), (1, 186)]),
    ([372, 372], None, 3, [(0, 248), (1, 248), (0, 124), (1, 124)]),
    ([372, 372, 10], None, 2, [(0, 372), (1, 372), (2, 10)]),  # 1.3 % over the ideal: not worth a cut
    ([10, 372, 372], None, 1, [(0, 10), (1, 372), (2, 372)]),  # one job: input order, nothing cut
    ([20], None, 2, [(0, 20)]),  # two halves would be below the floor
    ([5, 5], None, 2, [(0, 5), (1, 5)]),
    ([100, 20], None, 2, [(0, 60), (0, 40), (1, 20)]),
    ([50] * 5, None, 2, [(0, 50), (1, 50), (3, 50), (4, 50), (2, 25), (2, 25)]),
    ([500, 10, 10, 10], None, 4, [(0, 132)] * 3 + [(0, 102), (1, 10), (2, 10), (3, 10)]),
    # a .gz of ~333 MB decompressed cannot be cut: it starts first, the plain file fills up the other worker
    # and what is left of it goes after the .gz
    ([37, 372], [False, True], 2, [(1, 352), (0, 333), (1, 19)]),
    ([37, 37], [False, False], 2, [(0, 333), (1, 333)]),
]


@pytest.mark.parametrize("sizes, plain, jobs, expected", CASES,
                         ids=[f"{'+'.join(map(str, c[0]))}MiB-{'gz' if c[1] else 'plain'}-j{c[2]}" for c in CASES])
def test_units_for_sizes(sizes, plain, jobs, expected):
    plain = plain or [True] * len(sizes)
    inputs = [Piece(i, s * M, ok, None if ok else s * M * 9) for i, (s, ok) in enumerate(zip(sizes, plain))]
    assert shape(schedule(inputs, jobs)) == expected


def test_range_bytes_asks_for_a_fixed_split():
    got = schedule([Piece(0, 100 * M), Piece(1, 8 * M)], 2, max_range=30 * M)
    assert shape(got) == [(0, 25)] * 4 + [(1, 8)]  # ceil(100 / 30) = 4 equal ranges; 8 MiB whole; unbalanced
    assert [(p.start, p.end) for p in got if p.index == 0] == [(i * 25 * M, (i + 1) * 25 * M) for i in range(4)]
    assert len(schedule([Piece(0, 1000)], 2, max_range=300)) == 4  # below the floor too


def test_compressed_files_are_never_cut():
    got = schedule([Piece(0, 500 * M, False, 4000 * M), Piece(1, 500 * M, False, 4000 * M)], 8)
    assert [(p.index, p.start, p.end) for p in got] == [(0, 0, None), (1, 0, None)]
    got = schedule([Piece(0, 500 * M, False, 4000 * M), Piece(1, 50 * M)], 8, max_range=M)
    assert [(p.index, p.start, p.end) for p in got][:2] == [(0, 0, None), (1, 0, M)]


sizes_st = st.lists(st.tuples(st.integers(0, 600 * M), st.booleans()), min_size=1, max_size=7)


@settings(max_examples=200, deadline=None)
@given(files=sizes_st, jobs=st.integers(1, 6), cap=st.one_of(st.none(), st.integers(M, 300 * M)))
def test_any_sizes_are_covered_once_and_balanced_or_no_worse_than_uncut(files, jobs, cap):
    inputs = [Piece(i, s, plain, None if plain else s * 9) for i, (s, plain) in enumerate(files)]
    got = schedule(inputs, jobs, max_range=cap)
    for inp in inputs:
        mine = sorted((p.start, p.size if p.end is None else p.end) for p in got if p.index == inp.index)
        if not inp.cuttable or jobs == 1:
            assert [(p.start, p.end) for p in got if p.index == inp.index] == [(0, None)]
            continue
        assert mine[0][0] == 0 and mine[-1][1] == inp.size  # the whole file ...
        assert all(a[1] == b[0] for a, b in zip(mine, mine[1:]))  # ... once, in contiguous ranges
        lens = [e - s for s, e in mine]
        if cap:
            assert len(mine) == max(1, -(-inp.size // cap)) and max(lens) - min(lens) <= 1
        elif len(mine) > 1:
            assert min(lens) >= MIN_RANGE_BYTES
    if jobs > 1:
        costs = [p.cost for p in got]
        assert costs == sorted(costs, reverse=True)  # biggest first
        if not cap:
            whole = [p.cost for p in inputs]
            total = sum(whole)
            ideal = max(-(-total // jobs), max((p.cost for p in inputs if not p.cuttable), default=0))
            assert makespan(costs, jobs) <= max(makespan(sorted(whole, reverse=True), jobs), ideal * (1 + BALANCE))


def test_one_file_per_worker_when_they_balance():
    """The issue's benchmark: two 372 MB files, two jobs: two whole files, the ideal split."""
    got = schedule([Piece(0, 372_489_872), Piece(1, 372_489_872)], 2)
    assert makespan([p.cost for p in got], 2) == 372_489_872
    assert len(got) == 2
    assert makespan([p.cost for p in schedule([Piece(0, 300 * M)] * 3, 2)], 2) <= 450 * M * (1 + BALANCE)


# --- plan() and scan() on real files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> tuple[Path, list[Path], dict]:
    d = tmp_path_factory.mktemp("sched")
    truth: dict = {}
    paths = []
    for i, n in enumerate((9000, 6000, 3000)):
        p = d / f"site{i}_error_log"
        for k, v in synth.write(str(p), n, seed=20 + i).items():
            truth[k] = truth.get(k, 0) + v
        paths.append(p)
    gz = d / "site3_error_log.gz"
    raw = d / "raw3"
    for k, v in synth.write(str(raw), 4000, seed=30).items():
        truth[k] = truth.get(k, 0) + v
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    raw.unlink()
    paths.append(gz)
    return d, paths, truth


def test_plan_numbers_ranges_in_file_order_and_hands_out_biggest_first(logs):
    _, paths, _ = logs
    inputs = expand([str(p) for p in paths], lambda p, m: None)
    size0 = paths[0].stat().st_size
    units, failed = plan(inputs, None, ScanOptions([], jobs=2, range_bytes=size0 // 3 + 1))
    assert not failed
    first = sorted((u for u in units if u.index == 0), key=lambda u: u.seq)
    assert [(u.start, u.end) for u in first] == [(0, size0 // 3), (size0 // 3, 2 * size0 // 3),
                                                  (2 * size0 // 3, size0)]
    gz = [u for u in units if u.path.endswith(".gz")]
    assert len(gz) == 1 and gz[0].end is None  # compressed: whole, however small the cap
    assert units[0] is gz[0]  # its estimated decompressed size is the biggest piece
    one, _ = plan(inputs, None, ScanOptions([], jobs=1, range_bytes=1000))
    assert [(u.index, u.end) for u in one] == [(i, None) for i in range(4)]  # --jobs 1: whole, input order


@pytest.mark.parametrize("jobs, range_bytes", [(2, None), (3, None), (2, 200_000), (4, 333_333), (8, 64 << 10)],
                         ids=["j2-whole", "j3-whole", "j2-ranges", "j4-ranges", "j8-small-ranges"])
def test_every_schedule_gives_the_same_answer(logs, jobs, range_bytes):
    d, paths, truth = logs
    args = [str(p) for p in paths]
    one = to_json_obj(scan(ScanOptions(args, tz="UTC", jobs=1)))
    assert one["events"] and sum(one["events"].values()) == sum(truth.values())
    seen: list[tuple[int, int]] = []
    got = to_json_obj(scan(ScanOptions(args, tz="UTC", jobs=jobs, range_bytes=range_bytes,
                                       progress=lambda done, total: seen.append((done, total)))))
    assert got == one
    total = seen[-1][1]
    assert seen[-1] == (total, total) and total == sum(p.stat().st_size for p in paths)
    assert all(a[0] <= b[0] <= total for a, b in zip(seen, seen[1:]))  # never backwards, never past the total


def test_the_spawn_pool_of_other_systems_gives_the_same_answer(logs, monkeypatch):
    """Off Linux, --jobs runs on a spawn ProcessPoolExecutor (tlslog.workers forks): same answer, same progress."""
    from tlslog import scan as scan_module

    _, paths, _ = logs
    args = [str(p) for p in paths]
    one = to_json_obj(scan(ScanOptions(args, tz="UTC", jobs=1)))
    monkeypatch.setattr(scan_module, "_FORK", False)
    seen: list[tuple[int, int]] = []
    got = to_json_obj(scan(ScanOptions(args, tz="UTC", jobs=2, range_bytes=300_000,
                                       progress=lambda done, total: seen.append((done, total)))))
    assert got == one
    assert seen[-1][0] == seen[-1][1] == sum(p.stat().st_size for p in paths)


def test_ranges_run_in_any_order_merge_to_the_same_store(logs):
    _, paths, _ = logs
    inputs = expand([str(paths[0])], lambda p, m: None)
    units, _ = plan(inputs, None, ScanOptions([], jobs=2, range_bytes=100_000))
    assert len(units) > 5
    forward = merge_stream([run_unit(u) for u in units], {0: "apache"})
    backward = merge_stream([run_unit(u) for u in reversed(units)], {0: "apache"})
    assert forward.category_totals() == backward.category_totals()
    assert forward.files[0].lines == 9000


def test_a_file_that_is_a_stream_alone_closes_its_groups_where_it_runs(logs, tmp_path):
    """A whole file that is not part of a rotated set sends back no joiner state (the results of many small files
    were 360 KB each, pickled and merged by one process); the answer is the same."""
    _, paths, _ = logs
    units, _ = plan(expand([str(paths[0])], lambda p, m: None), None, ScanOptions([], jobs=1))
    assert units[0].alone
    here, there = run_unit(units[0]), run_unit(dataclasses.replace(units[0], alone=False))
    assert here.keys == {} and len(there.keys) > 10
    a, b = merge_stream([here], {0: "apache"}), merge_stream([there], {0: "apache"})
    assert (a.events, a.first, a.last, a.examples, a.files[0].events) == (b.events, b.first, b.last, b.examples,
                                                                          b.files[0].events)
    # a rotated set is one stream: a group cut by the rotation is joined across the files, so nothing is closed early
    (tmp_path / "error_log.1").write_bytes(paths[1].read_bytes())
    (tmp_path / "error_log").write_bytes(paths[2].read_bytes())
    rotated, _ = plan(expand([str(tmp_path)], lambda p, m: None), None, ScanOptions([], jobs=2))
    assert len(rotated) == 2 and not any(u.alone for u in rotated)
    ranges, _ = plan(expand([str(paths[0])], lambda p, m: None), None, ScanOptions([], jobs=2, range_bytes=1 << 20))
    assert len(ranges) > 1 and not any(u.alone for u in ranges)


def test_cli_jobs_2_equals_jobs_1(logs):
    _, paths, _ = logs
    out = []
    for jobs in ("1", "2"):
        r = subprocess.run([sys.executable, "-m", "tlslog.cli", "scan", "--format", "json", "--jobs", jobs,
                            *map(str, paths)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
        out.append(r.stdout)
    assert out[0] == out[1]
    assert json.loads(out[0])["lines"] == 22000


# --- the fork workers ------------------------------------------------------------------------------------------


def _children() -> set[int]:
    """This process's children, zombies included (a worker not reaped is one), from /proc."""
    me = os.getpid()
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                cmdline = Path(f"/proc/{d}/cmdline").read_bytes()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) != me:  # field 4, ppid (the name may hold spaces)
                continue
            if b"resource_tracker" in cmdline:
                continue  # the spawn pool's (multiprocessing's), started once and kept for the session
            out.add(int(d))
    return out


@pytest.fixture(autouse=True)
def _no_children_left():
    """Every worker is reaped: no child of this process is left after a test."""
    before = _children()
    yield
    assert _children() <= before


PARENT = os.getpid()


def _square_slowly_here(i: int) -> tuple[int, int]:
    time.sleep(0.01)  # so that no process takes every item before the others have started
    workers.add_bytes(i)
    return i * i, os.getpid()


def test_run_gives_results_in_item_order_from_several_processes():
    items = list(range(40))
    got = workers.run(_square_slowly_here, items, 3)
    assert [r for r, _ in got] == [i * i for i in items]
    assert len({pid for _, pid in got}) >= 2
    assert PARENT in {pid for _, pid in got}  # this process is a worker too


def test_done_bytes_counts_every_process():
    seen = []
    workers.run(_square_slowly_here, list(range(30)), 2, on_wait=lambda: seen.append(workers.done_bytes()))
    assert seen == sorted(seen)
    assert seen[-1] == sum(range(30))  # the last call comes after every worker has sent its results
    assert workers.done_bytes() == 0  # outside a run


def _fail_in_worker(i: int) -> int:
    if os.getpid() == PARENT:
        time.sleep(0.02)
        return i
    raise ValueError(f"bad item {i}")


def test_an_exception_in_a_worker_is_raised_with_its_traceback():
    with pytest.raises(workers.WorkerError, match=r"(?s)--jobs worker \(pid \d+\) failed.*ValueError: bad item"):
        workers.run(_fail_in_worker, list(range(30)), 2)


def _die_in_worker(i: int) -> int:
    if os.getpid() == PARENT:
        time.sleep(0.02)
        return i
    os.kill(os.getpid(), signal.SIGKILL)
    return i


def test_a_killed_worker_is_reported():
    with pytest.raises(workers.WorkerError, match=r"ended without its results \(killed by SIGKILL\)"):
        workers.run(_die_in_worker, list(range(30)), 2)


def _die_holding_the_queue(i: int) -> int:
    if os.getpid() != PARENT:
        fcntl.lockf(workers._state.lock, fcntl.LOCK_EX)  # as if killed inside State.take
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.02)
    return i


def test_a_worker_killed_while_taking_a_unit_does_not_stall_the_others():
    def stalled(signum, frame):
        raise AssertionError("the queue stayed locked after its holder died")

    old = signal.signal(signal.SIGALRM, stalled)
    signal.alarm(20)
    try:
        with pytest.raises(workers.WorkerError, match=r"killed by SIGKILL"):
            workers.run(_die_holding_the_queue, list(range(30)), 2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _interrupt_here(i: int) -> int:
    if os.getpid() == PARENT:
        time.sleep(0.05)
        raise KeyboardInterrupt
    time.sleep(60)  # a worker busy for a long time: the parent must not wait for it
    return i


def test_interrupt_stops_the_workers_at_once():
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        workers.run(_interrupt_here, list(range(4)), 3)
    assert time.monotonic() - t0 < 10


def test_one_item_or_one_job_runs_here():
    assert workers.run(_square_slowly_here, [3], 4) == [(9, PARENT)]
    assert workers.run(_square_slowly_here, [1, 2], 1) == [(1, PARENT), (4, PARENT)]
    assert workers.run(_square_slowly_here, [], 2) == []
