"""logfiles: real files, modes, errors that name the fix, level filter, buffering, reopen, fork."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tlsfront import logfiles
from tlsfront.logfiles import LogFile, LogFileError, Logs

ERROR_LINE = re.compile(r"^\[\w{3} \w{3} \d{2} [\d:.]+ \d{4}\] \[\w+:\w+\] \[pid \d+\] .*TLSF\d{4}: .*$")


@pytest.fixture(autouse=True)
def umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_created_0640_and_appended(tmp_path: Path) -> None:
    p = tmp_path / "error.log"
    p.write_text("old line\n")
    os.chmod(p, 0o600)
    logs = Logs(error_log=p, access_log=tmp_path / "access.log", ssl_request_log=tmp_path / "ssl.log")
    logs.error("shutdown_done")
    logs.access("v:443", "127.0.0.1", "GET / HTTP/1.1", 200, 10, None, "curl")
    logs.ssl_request("127.0.0.1", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "GET / HTTP/1.1", 10, 0.001, True,
                     vhost="v:443")
    logs.close()
    lines = p.read_text().splitlines()
    assert lines[0] == "old line" and ERROR_LINE.match(lines[1]) and "TLSF0004" in lines[1]
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600  # an existing file keeps its mode
    assert stat.S_IMODE(os.stat(tmp_path / "access.log").st_mode) == 0o640
    assert (tmp_path / "access.log").read_text().startswith("v:443 127.0.0.1 - - [")
    assert (tmp_path / "ssl.log").read_text().endswith(" 0.001000 reused v:443\n")


def test_missing_parent_is_a_config_error(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "error.log"
    with pytest.raises(LogFileError) as info:
        Logs(error_log=target)
    msg = str(info.value)
    assert "[server] error_log" in msg and str(target) in msg
    assert f"the first missing one is {tmp_path / 'no'}" in msg and "mkdir -p" in msg
    assert not (tmp_path / "no").exists()  # nothing was created


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(LogFileError, match="is a directory"):
        Logs(access_log=tmp_path)


def test_permission_denied_names_the_directory_without_x() -> None:
    # pytest's tmp_path sits under a 0700 directory: use a world-searchable one.
    base = Path(tempfile.mkdtemp(prefix="tlsfront-perm-"))
    os.chmod(base, 0o755)
    locked = base / "locked"
    (locked / "inner").mkdir(parents=True)
    os.chmod(locked, 0o700 if os.geteuid() == 0 else 0o600)
    target = locked / "inner" / "error.log"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: as an unprivileged user when we are root (root ignores modes)
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                Logs(error_log=target)
                os.write(w, b"opened?!")
            except LogFileError as exc:
                os.write(w, str(exc).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    msg = os.read(r, 65536).decode()
    os.close(r)
    os.chmod(locked, 0o700)
    shutil.rmtree(base)
    assert f"the directory {locked} lacks the x (search) permission" in msg, msg
    assert f"chmod o+x {locked}" in msg


def test_bad_level() -> None:
    with pytest.raises(LogFileError, match="log_level 'verbose' is not one of emerg, alert"):
        Logs(log_level="verbose")


def test_level_filter(tmp_path: Path) -> None:
    p = tmp_path / "e.log"
    logs = Logs(error_log=p, log_level="warn")
    logs.error("handshake_eof", client=("127.0.0.1", 1), vhost="v:443", detail="x")  # info: dropped
    logs.error("backend_down", vhost="v:443", backend="b:1", seconds=5)  # warn: kept
    logs.error("reload_failed", error="bad")  # error: kept
    assert not logs.enabled("handshake_failed") and logs.enabled("backend_down")
    logs.close()
    text = p.read_text()
    assert "TLSF0202" not in text and "TLSF0304" in text and "TLSF0007" in text
    debug = Logs(error_log=p, log_level="debug")
    assert debug.enabled("handshake_done")
    debug.close()


def test_buffered_until_the_reactor_turn(tmp_path: Path) -> None:
    clock = Clock()
    p = tmp_path / "a.log"
    logs = Logs(access_log=p, schedule=clock.callLater)
    for i in range(3):
        logs.access("v:443", "127.0.0.1", f"GET /{i} HTTP/1.1", 200, 1, None, None)
    assert p.read_text() == ""
    assert len(clock.getDelayedCalls()) == 1  # one flush for the whole turn
    clock.advance(0)
    assert len(p.read_text().splitlines()) == 3
    # Large bursts are written without waiting for the turn.
    line_len = len(p.read_text().splitlines()[0]) + 1
    for i in range(logfiles.MAX_PENDING_BYTES // line_len + 1):
        logs.access("v:443", "127.0.0.1", f"GET /{i} HTTP/1.1", 200, 1, None, None)
    assert os.path.getsize(p) > logfiles.MAX_PENDING_BYTES
    logs.close()


def test_stderr_copy(tmp_path: Path) -> None:
    r, w = os.pipe()
    logs = Logs(error_log=tmp_path / "e.log", log_stderr=True, stderr_fd=w)
    logs.error("shutdown_done")
    logs.close()
    os.close(w)
    copy = os.read(r, 4096).decode()
    os.close(r)
    assert copy == (tmp_path / "e.log").read_text() and "TLSF0004" in copy


def test_reopen_after_rotation(tmp_path: Path) -> None:
    p = tmp_path / "e.log"
    a = tmp_path / "a.log"
    logs = Logs(error_log=p, access_log=a)
    logs.error("shutdown_done")
    os.rename(p, tmp_path / "e.log.1")
    os.rename(a, tmp_path / "a.log.1")
    logs.access("v:443", "127.0.0.1", "GET /late HTTP/1.1", 200, 1, None, None)  # still the old file
    assert logs.reopen() == []
    logs.error("shutdown_done")
    logs.access("v:443", "127.0.0.1", "GET /new HTTP/1.1", 200, 1, None, None)
    logs.close()
    assert "TLSF0004" in (tmp_path / "e.log.1").read_text()
    new = p.read_text().splitlines()
    assert "TLSF0008" in new[0] and "TLSF0004" in new[1]
    assert "/late" in (tmp_path / "a.log.1").read_text() and "/new" in a.read_text()


def test_reopen_failure_keeps_the_old_file(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    logs = Logs(error_log=d / "e.log", access_log=d / "a.log")
    os.rename(d, tmp_path / "moved")  # the directory is gone: reopen cannot create the files
    problems = logs.reopen()
    assert len(problems) == 2 and all("does not exist" in p for p in problems)
    logs.access("v:443", "127.0.0.1", "GET / HTTP/1.1", 200, 1, None, None)
    logs.close()
    moved = (tmp_path / "moved" / "e.log").read_text()
    assert "TLSF0008" in moved and "TLSF0104" in moved and "The old file stays in use" in moved
    assert "GET /" in (tmp_path / "moved" / "a.log").read_text()


def test_write_errors_never_raise() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    f = LogFile(fd=fd, what="test")
    f.write("a line\n")  # ENOSPC
    assert f.dropped_lines == 1 and "write failed" in (f.last_error or "")
    f.close()
    os.close(fd)


def test_fork_flushes_before_and_forgets_in_child(tmp_path: Path) -> None:
    clock = Clock()
    p = tmp_path / "a.log"
    logs = Logs(access_log=p, schedule=clock.callLater)
    logs.access("v:443", "127.0.0.1", "GET /parent HTTP/1.1", 200, 1, None, None)  # pending
    pid = os.fork()
    if pid == 0:
        try:
            logs.access("v:443", "127.0.0.1", "GET /child HTTP/1.1", 200, 1, None, None)
            logs.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    clock.advance(0)
    logs.close()
    lines = p.read_text().splitlines()
    assert [l.split('"')[1] for l in lines] == ["GET /parent HTTP/1.1", "GET /child HTTP/1.1"]


def test_workers_never_interleave_lines(tmp_path: Path) -> None:
    """4 forked workers append 3000 lines each (varied lengths, batched flushes) to one file."""
    p = tmp_path / "a.log"
    logs = Logs(access_log=p)
    pids = []
    for w in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                clock = Clock()
                logs.set_scheduler(clock.callLater)
                for i in range(3000):
                    logs.access("v:443", "127.0.0.1", f"GET /w{w}/{i}/{'x' * (i % 700)} HTTP/1.1", 200, i,
                                None, None)
                    if i % 37 == 0:
                        clock.advance(0)
                logs.flush()
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    logs.close()
    lines = p.read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == 4 * 3000
    pattern = re.compile(rb'^v:443 127\.0\.0\.1 - - \[[^\]]+\] "GET /w(\d)/(\d+)/x* HTTP/1\.1" 200 \d+ "-" "-" -$')
    seen = {w: [] for w in range(4)}
    for line in lines:
        m = pattern.match(line)
        assert m, line[:120]
        seen[int(m[1])].append(int(m[2]))
    for w in range(4):
        assert seen[w] == list(range(3000))  # each worker's lines whole and in order


def test_check_path(tmp_path: Path) -> None:
    assert logfiles.check_path(tmp_path / "ok.log") is None
    assert "does not exist" in logfiles.check_path(tmp_path / "missing" / "x.log")


def test_from_settings(tmp_path: Path) -> None:
    from tlsfront.model import ServerSettings
    s = ServerSettings(error_log=tmp_path / "e.log", access_log=None, ssl_request_log=tmp_path / "s.log",
                       log_level="notice")
    logs = Logs.from_settings(s)
    assert logs.access_file is None and logs.error_file is not None and logs.ssl_request_file is not None
    assert not logs.enabled("handshake_failed") and logs.enabled("shutdown_done")
    logs.close()
