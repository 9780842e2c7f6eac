"""tlslog scan --dask: the same units on a Dask LocalCluster give exactly the local result (JSON output compared
whole), for the corpus, for a large file cut into byte ranges, and for fsspec URLs; and bad --dask values are
clear errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from exports_tools import TLSLOG, free_port

pytest.importorskip("distributed", reason="the [dask] extra is installed by `make test`")

from tlslog import synth  # noqa: E402
from tlslog.distributed import DaskError, parse_spec, scan_on_dask  # noqa: E402
from tlslog.render import to_json_obj  # noqa: E402
from tlslog.scan import ScanOptions, scan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(str(p) for p in (ROOT / "tests" / "data" / "logs").glob("*/*") if p.is_file())


def local_json(paths: list[str], **kw) -> dict:
    return to_json_obj(scan(ScanOptions(list(paths), tz="UTC", **kw)))


def test_local_cluster_equals_local_scan_on_the_corpus() -> None:
    expected = local_json(CORPUS)
    got = to_json_obj(scan_on_dask(ScanOptions(list(CORPUS), tz="UTC"), "local:2", processes=False))
    assert got == expected
    assert sum(expected["events"].values()) > 0


def test_local_cluster_with_a_large_file_cut_into_ranges(tmp_path: Path) -> None:
    big = tmp_path / "error_log"
    truth = synth.write(str(big), 20000, seed=11)
    rotated = tmp_path / "error_log.1"
    synth.write(str(rotated), 3000, seed=12)
    paths = [str(tmp_path / "error_log*")]
    expected = local_json(paths)
    opts = ScanOptions(paths, tz="UTC", range_bytes=256 << 10)  # ~15 ranges for the big file
    got = to_json_obj(scan_on_dask(opts, "local:2", processes=False))
    assert got == expected
    assert opts.mapper is not None and opts.jobs >= 2  # it did run through the cluster, cut in ranges
    assert expected["lines"] == 23000
    assert sum(expected["events"].values()) >= sum(truth.values())


def test_fsspec_urls_equal_local_paths() -> None:
    expected = local_json(CORPUS)
    urls = [f"file://{p}" for p in CORPUS]
    got = to_json_obj(scan_on_dask(ScanOptions(urls, tz="UTC"), "local:2", processes=False))
    for f in got["files"]:
        assert f["path"].startswith("file://")
        f["path"] = f["path"][len("file://"):]
    assert got == expected


def test_cli_dask_local_processes_equals_local(tmp_path: Path) -> None:
    files = CORPUS[:4]
    plain = subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "json", *files], capture_output=True,
                           text=True, check=True)
    dask = subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "json", "--dask", "local:2", *files],
                          capture_output=True, text=True, timeout=120)
    assert dask.returncode == 0, dask.stderr
    assert json.loads(dask.stdout) == json.loads(plain.stdout)


@pytest.mark.parametrize("spec", ["local:0", "local:x", "-x", ""])
def test_bad_spec_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ValueError, match=f"--dask {spec!r}: expected"):
        parse_spec(spec)


def test_unreachable_scheduler_is_a_clear_error() -> None:
    spec = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(DaskError, match=f"--dask {spec}: cannot reach the scheduler"):
        scan_on_dask(ScanOptions(CORPUS[:1]), spec, connect_timeout="1s")


def test_mixing_urls_and_paths_is_refused() -> None:
    with pytest.raises(DaskError, match="either local paths or fsspec URLs"):
        scan_on_dask(ScanOptions([CORPUS[0], f"file://{CORPUS[1]}"]), "local:1", processes=False)


def test_cli_urls_without_dask_read_through_fsspec_here() -> None:
    files = CORPUS[:3]
    plain = json.loads(subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "json", *files],
                                      capture_output=True, text=True, check=True).stdout)
    r = subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "json", *(f"file://{p}" for p in files)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [f["path"] for f in got["files"]] == [f"file://{p}" for p in files]
    for f in got["files"]:
        f["path"] = f["path"][len("file://"):]
    assert got == plain


def test_cli_url_errors_are_one_line() -> None:
    r = subprocess.run([*TLSLOG, "scan", "--format", "json", "nosuchscheme://bucket/x.log"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("tlslog: error: cannot list nosuchscheme://bucket/x.log: ")
    r = subprocess.run([*TLSLOG, "scan", "--format", "json", "memory://nothing/x.log"], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert "tlslog: warning: memory:///nothing/x.log: cannot open: no such file or object" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_against_a_real_scheduler_and_worker(tmp_path: Path) -> None:
    """``--dask tcp://...``: a ``dask scheduler`` and a ``dask worker`` started on 127.0.0.1 (what docs/ tell
    operators to run on their hosts)."""
    import sys

    from exports_tools import Daemon, wait_for

    dask_cli = Path(sys.executable).with_name("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = Daemon([str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                       str(tmp_path / "scheduler.log"))
    worker = None
    try:
        wait_for(lambda: "Scheduler at:" in scheduler.output(), timeout=60, what="dask scheduler up")
        worker = Daemon([str(dask_cli), "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                         "--host", "127.0.0.1", "--local-directory", str(tmp_path / "worker")],
                        str(tmp_path / "worker.log"))
        wait_for(lambda: "Registered to:" in worker.output(), timeout=60, what="dask worker registered")
        files = CORPUS[:5]
        plain = subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "json", *files],
                               capture_output=True, text=True, check=True)
        r = subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "json", "--dask", address, *files],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == json.loads(plain.stdout)
    finally:
        if worker is not None:
            worker.stop()
        scheduler.stop()
