"""The scan end to end: synthetic truth, block/range splits, --jobs, compression, rotation, stdin, bad input."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tlslog import synth
from tlslog.blocks import BlockReader
from tlslog.catalog import CATEGORIES
from tlslog.cli import main
from tlslog.render import to_json_obj
from tlslog.scan import ScanOptions, merge_stream, plan, run_unit, scan
from tlslog.sources import expand, rotation_key


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("synth") / "error_log"
    truth = synth.write(str(path), 30_000, tls_fraction=0.1, seed=7)
    return path, dict(truth)


def events_of(result) -> dict:
    return {k: v for k, v in result.store.category_totals().items() if v}


def test_synthetic_truth(synthetic):
    path, truth = synthetic
    result = scan(ScanOptions([str(path)], tz="UTC"))
    assert events_of(result) == truth
    assert result.store.total_lines == 30_000
    assert result.store.total_unparsed == 0


@settings(max_examples=12, deadline=None)
@given(range_bytes=st.integers(200, 400_000))
def test_any_range_split_gives_the_same_result(synthetic, range_bytes):
    """Cut the file into byte ranges (what --jobs does with large files), process apart, merge: same answer."""
    path, truth = synthetic
    opts = ScanOptions([str(path)], tz="UTC", jobs=2, range_bytes=range_bytes)
    inputs = expand(opts.paths, lambda p, m: None)
    units, _ = plan(inputs, None, opts)
    assert len(units) == -(-path.stat().st_size // range_bytes)
    store = merge_stream([run_unit(u) for u in units], {0: "apache"})
    assert {k: v for k, v in store.category_totals().items() if v} == truth
    assert store.total_lines == 30_000
    assert store.files[0].lines == 30_000


def test_jobs_2_equals_jobs_1(synthetic, tmp_path):
    path, _ = synthetic
    other = tmp_path / "other_error_log"
    synth.write(str(other), 5_000, seed=3)
    one = to_json_obj(scan(ScanOptions([str(path), str(other)], tz="UTC", jobs=1)))
    two = to_json_obj(scan(ScanOptions([str(path), str(other)], tz="UTC", jobs=2, range_bytes=1 << 20)))
    assert two == one


COMPRESS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda b: zstandard.ZstdCompressor().compress(b),
    "gz-multimember": lambda b: gzip.compress(b[: len(b) // 2]) + gzip.compress(b[len(b) // 2:]),
}


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_compressed_equals_plain(synthetic, tmp_path, kind):
    path, _ = synthetic
    data = path.read_bytes()
    packed = tmp_path / f"error_log.{kind}"
    packed.write_bytes(COMPRESS[kind](data))
    plain = to_json_obj(scan(ScanOptions([str(path)], tz="UTC")))
    got = to_json_obj(scan(ScanOptions([str(packed)], tz="UTC")))
    for key in ("events", "lines", "unparsed_lines"):
        assert got[key] == plain[key]
    assert got["files"][0]["warnings"] == []


def test_rotated_set_is_read_oldest_first(tmp_path):
    names = ["error_log", "error_log.1", "error_log.2.gz", "error_log.10.gz", "access_log-20261125",
             "access_log-20261126.gz", "access_log"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    got = [Path(i.path).name for i in expand([str(tmp_path)], lambda p, m: None)]
    assert got == ["access_log-20261125", "access_log-20261126.gz", "access_log",
                   "error_log.10.gz", "error_log.2.gz", "error_log.1", "error_log"]
    assert rotation_key("x/error_log.3.gz") == ("x/error_log", -3, "")


def test_event_cut_by_rotation_joins_across_files(tmp_path):
    ap = "[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] "
    (tmp_path / "error_log.1").write_text(
        ap + "[client 127.0.0.1:5] AH02008: SSL library error 1 in handshake (server a:443)\n")
    (tmp_path / "error_log").write_text(
        ap + "SSL Library Error: error:0A0000C1:SSL routines::no shared cipher\n")
    result = scan(ScanOptions([str(tmp_path / "error_log"), str(tmp_path / "error_log.1")], tz="UTC"))
    assert events_of(result) == {"no_shared_cipher": 1}


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30),
       sizes=st.lists(st.integers(1, 40), min_size=1, max_size=20), block=st.integers(1, 64))
def test_block_reader_any_chunking_same_lines(lines, sizes, block):
    data = b"".join(ln + b"\n" for ln in lines)
    chunks, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        chunks.append(data[i:i + n])
        i += n
        k += 1
    out = list(BlockReader(iter(chunks), block_size=block, max_line=1 << 20))
    assert b"".join(b for _, b in out) == data
    assert all(b.endswith(b"\n") for _, b in out)
    offsets = [o for o, _ in out]
    assert offsets == sorted(offsets) and (not out or offsets[0] == 0)


# -- bad input: warn once per file naming it, go on, exit non-zero only if nothing was read ---------------------

def run_cli(argv: list[str], capsys) -> tuple[int, dict | str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    out = cap.out
    if "--format" in argv and argv[argv.index("--format") + 1] == "json":
        out = json.loads(out)
    assert "Traceback" not in cap.err
    return rc, out, cap.err


def test_missing_file_warns_and_the_scan_goes_on(synthetic, tmp_path, capsys):
    path, truth = synthetic
    missing = tmp_path / "nope.log"
    rc, out, err = run_cli(["scan", "--format", "json", "--timezone", "UTC", str(missing), str(path)], capsys)
    assert rc == 0
    assert f"{missing}: cannot open: No such file or directory" in err
    assert {k: v for k, v in out["events"].items() if v} == truth


def test_nothing_readable_exits_1(tmp_path, capsys):
    rc, out, err = run_cli(["scan", "--format", "json", str(tmp_path / "a"), str(tmp_path / "b*.log")], capsys)
    assert rc == 1
    assert "no input could be read" in err and "no file matches this pattern" in err
    assert set(out["events"]) == set(CATEGORIES) and not any(out["events"].values())


def _cli_as(uid: int | None, argv: list[str]) -> tuple[int, str, str]:
    """``tlslog`` main(argv) in a forked child, as ``uid`` (and gid) when given: (exit status, stdout, stderr).
    A fork, not a new interpreter: the interpreter lives under /root (mode 0700), which uid 65534 cannot reach."""
    import io

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(r)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
            rc = main(argv)
            result = {"rc": rc, "out": sys.stdout.getvalue(), "err": sys.stderr.getvalue()}
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            result = {"rc": -1, "out": "", "err": f"child raised {exc!r}"}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks))
    return result["rc"], result["out"], result["err"]


def test_unreadable_file():
    """A file of mode 000 is reported by name with the OS's reason, exit 1. Root reads such files, so as root (CI)
    the scan runs in a forked child as uid/gid 65534, on a file in a directory that uid can traverse (pytest's
    tmp_path is mode 0700), as tests/proxy/test_config.py does for its permission test."""
    import tempfile

    uid = 65534 if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="tlslog-perm-"))
    try:
        os.chmod(base, 0o755)
        f = base / "secret.log"
        f.write_text("[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] AH01964: x\n")
        f.chmod(0)
        rc, out, err = _cli_as(uid, ["scan", "--format", "json", str(f)])
        assert rc == 1, err
        assert f"{f}: cannot open: Permission denied" in err, err
        assert "Traceback" not in err
        assert not any(json.loads(out)["events"].values())
        # the same file made readable is read: the failure above was the permission, nothing else
        f.chmod(0o644)
        rc, out, err = _cli_as(uid, ["scan", "--format", "json", str(f)])
        assert rc == 0, err
        assert json.loads(out)["files"][0]["lines"] == 1
    finally:
        shutil.rmtree(base)


def test_corrupt_and_truncated_gzip(synthetic, tmp_path, capsys):
    path, truth = synthetic
    data = gzip.compress(path.read_bytes())
    truncated = tmp_path / "error_log.1.gz"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "junk.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(2000))
    rc, out, err = run_cli(["scan", "--format", "json", "--timezone", "UTC", str(truncated), str(corrupt)], capsys)
    assert rc == 0  # the truncated file gave lines
    assert f"{truncated}: truncated gzip data" in err
    assert f"{corrupt}: " in err and "corrupt gzip data" in err
    files = {Path(f["path"]).name: f for f in out["files"]}
    assert 0 < files["error_log.1.gz"]["lines"] < 30_000
    assert err.count(str(corrupt)) == 1 and err.count(str(truncated)) == 1  # once per file


def test_binary_junk_long_line_and_non_utf8(tmp_path, capsys):
    ap = b"[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] "
    log = tmp_path / "error_log"
    log.write_bytes(
        ap + b"[client 127.0.0.1:5] AH02008: SSL library error 1 in handshake (server caf\xe9\xff:443)\n"
        + ap + b"SSL Library Error: error:0A000102:SSL routines::unsupported protocol \xc3\x28\n"
        + b"X" * (5 << 20) + b"\n"
        + ap + b"AH01964: Connection to child 1 established (server a:443)\n")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(100_000))
    rc, out, err = run_cli(["scan", "--format", "json", str(log), str(junk)], capsys)
    assert rc == 0
    assert out["events"]["protocol_mismatch"] == 1
    files = {Path(f["path"]).name: f for f in out["files"]}
    assert files["error_log"]["lines"] == 4 and files["error_log"]["unparsed_lines"] == 1
    assert "longer than" in err and f"{log}:" in err
    assert f"{junk}: format not recognised" in err
    assert files["junk.bin"]["lines"] == files["junk.bin"]["unparsed_lines"] > 0


def test_usage_errors_exit_2(capsys):
    assert main(["scan", "--timezone", "Mars/Olympus", "x"]) == 2
    assert main(["scan", "--input-format", "iis", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown time zone" in err and "valid: access, apache22_error, apache_error" in err


def test_stdin_plain_and_gzip(synthetic):
    path, truth = synthetic
    tlslog = shutil.which("tlslog", path=str(Path(sys.executable).parent)) or "tlslog"
    for data in (path.read_bytes(), gzip.compress(path.read_bytes())):
        r = subprocess.run([tlslog, "scan", "--format", "json", "--timezone", "UTC", "-"], input=data,
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert {k: v for k, v in out["events"].items() if v} == truth
        assert out["lines"] == 30_000


def test_input_format_override(tmp_path, capsys):
    # an nginx line would be detected as nginx; forcing apache_error makes it unparsed
    f = tmp_path / "x.log"
    f.write_text("2026/11/27 10:50:52 [info] 1#1: *5 client sent plain HTTP request to HTTPS port while reading "
                 "client request headers, client: 127.0.0.1, server: a\n")
    _, out, _ = run_cli(["scan", "--format", "json", str(f)], capsys)
    assert out["events"]["plain_http_on_tls_port"] == 1
    _, out, _ = run_cli(["scan", "--format", "json", "--input-format", "apache_error", str(f)], capsys)
    assert out["events"]["plain_http_on_tls_port"] == 0 and out["unparsed_lines"] == 1


# -- any cut of the input into chunks and blocks gives the same result, for every format of the corpus -------------

def _corpus_samples() -> list[tuple[str, bytes]]:
    data = Path(__file__).resolve().parents[1] / "data" / "logs"
    picks = ["apache24-event/error.log", "apache24-startup/error_startup.log", "nginx122/error.log",
             "haproxy26/haproxy_errorlogformat.log", "legacy/apache22_error_log", "apache24-event/ssl_request.log",
             "apache24-event/access.log"]
    out = []
    for rel in picks:
        p = data / rel
        if p.exists():
            out.append((rel, p.read_bytes()))
    return out


SAMPLES = _corpus_samples()


def _scan_bytes(data: bytes, sizes: list[int], block_size: int) -> tuple:
    from tlslog import decoders
    from tlslog.classify import Joiner
    from tlslog.scan import _emitter, _finish_ctx, _new_ctx, process_chunks
    from tlslog.store import FileStats, Store

    fmt = decoders.detect(data[:65536])
    chunks, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        chunks.append(data[i:i + n])
        i, k = i + n, k + 1
    store, stats = Store(), FileStats(0, "x", fmt.name)
    store.files[0] = stats
    joiner = Joiner(_emitter(store, {0: (stats, fmt.source)}))
    ctx = _new_ctx(0, "UTC")
    process_chunks(iter(chunks), fmt, stats, store, joiner, ctx, warn=lambda m: None, block_size=block_size)
    joiner.finish()
    _finish_ctx(ctx, store, stats, fmt.source)
    return (dict(store.events), stats.lines, stats.unparsed_lines, dict(store.status), dict(store.protocols),
            {c: ex[0] for c, ex in store.examples.items()})


@pytest.mark.skipif(not SAMPLES, reason="the corpus (tests/data/logs) is missing")
@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, 100), sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
       block=st.integers(1, 20000))
def test_any_chunking_of_any_corpus_file_gives_the_same_result(which, sizes, block):
    name, data = SAMPLES[which % len(SAMPLES)]
    assert _scan_bytes(data, sizes, block) == _scan_bytes(data, [len(data) or 1], 4 << 20), name


def test_late_errors_do_not_count_or_stick_to_earlier_failures(tmp_path):
    """OpenSSL 3 reports a client that closes without close_notify as "unexpected eof while reading" AFTER the
    handshake (AH01992 + SSL Library Error): ordinary traffic, not a failed connection."""
    ap = "[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1:tid 2] "
    later = "[Fri Nov 27 10:59:00.000000 2026] [ssl:info] [pid 1:tid 2] "
    (tmp_path / "error_log").write_text(
        ap + "[client 127.0.0.1:5] AH02008: SSL library error 1 in handshake (server a:443)\n"
        + ap + "SSL Library Error: error:0A000102:SSL routines::unsupported protocol\n"
        + later + "[client 127.0.0.1:6] AH01992: SSL library error 1 reading data\n"
        + later + "SSL Library Error: error:0A000126:SSL routines::unexpected eof while reading\n"
        + later + "(70014)End of file found: [client 127.0.0.1:7] AH01991: SSL input filter read failed.\n")
    result = scan(ScanOptions([str(tmp_path / "error_log")], tz="UTC"))
    assert events_of(result) == {"protocol_mismatch": 1}
