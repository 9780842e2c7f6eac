"""``tlslog follow`` and ``tlslog backfill`` as commands: /metrics over HTTP with the follow-only families, a clean
stop on SIGTERM that writes --positions and --textfile, and bad options or files as one-line errors (never a
traceback)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from exports_tools import TLSLOG, Daemon, by_label, free_port, http_get, metric_values, wait_for

from tlslog import synth


def test_follow_serves_metrics_and_stops_cleanly(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    truth_a = synth.write(str(logs / "a-error.log"), 3000, seed=1)
    port = free_port()
    positions = tmp_path / "positions.json"
    textfile = tmp_path / "tlslog.prom"
    d = Daemon([*TLSLOG, "follow", str(logs / "*-error.log"), "--listen", f"127.0.0.1:{port}", "--positions",
                str(positions), "--textfile", str(textfile), "--poll-interval", "0.05", "--timezone", "UTC"],
               str(tmp_path / "follow.log"))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        def lines(n: int):
            def check():
                text = http_get(url)
                return text if sum(metric_values(text, "tlslog_lines_total").values()) == n else None
            return check

        wait_for(lines(3000), what="the first file read")
        truth_b = synth.write(str(logs / "b-error.log"), 2000, seed=2)  # a new file matching the glob
        text = wait_for(lines(5000), what="the new file read")
        assert sum(metric_values(text, "tlslog_files_followed").values()) == 2
        assert by_label(metric_values(text, "tlslog_rotations_total"), "kind") == {"rename": 0, "copytruncate": 0}
        expected = {k: float(v) for k, v in (truth_a + truth_b).items()}
        got = wait_for(lambda: {k: v for k, v in by_label(metric_values(http_get(url), "tlslog_events_total"),
                                                          "category").items() if v} == expected,
                       what="every event counted (the last ones after the idle flush)")
        assert got
    finally:
        d.proc.send_signal(signal.SIGTERM)
        rc = d.stop()
    assert rc == 0, d.output()
    assert "Traceback" not in d.output()
    state = json.loads(positions.read_text())
    assert sorted(Path(f["path"]).name for f in state["files"]) == ["a-error.log", "b-error.log"]
    assert sum(metric_values(textfile.read_text(), "tlslog_lines_total").values()) == 5000


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TLSLOG, *args], capture_output=True, text=True, timeout=60)


def test_damaged_positions_file(tmp_path: Path) -> None:
    bad = tmp_path / "positions.json"
    bad.write_text("{broken")
    r = run("follow", str(tmp_path / "x.log"), "--positions", str(bad), "--textfile", str(tmp_path / "t.prom"))
    assert r.returncode == 2
    assert r.stderr.startswith(f"tlslog: error: --positions {bad}: not a tlslog positions file (")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--listen", "9469"], "--listen '9469': expected HOST:PORT"),
    (["--poll-interval", "0"], "--poll-interval 0.0: must be more than 0 seconds"),
    (["--timezone", "Mars/Olympus"], "--timezone 'Mars/Olympus': unknown time zone"),
    (["--input-format", "iis"], "--input-format: unknown input format 'iis'"),
    (["--listen", ""], "follow: nothing to export; give --listen HOST:PORT"),
], ids=["listen", "poll-interval", "timezone", "input-format", "nothing-to-export"])
def test_follow_option_errors(tmp_path: Path, args: list[str], message: str) -> None:
    if "--listen" not in args:
        args = [*args, "--listen", "127.0.0.1:0"]
    r = run("follow", str(tmp_path / "x.log"), *args)
    assert r.returncode == 2
    assert r.stderr.startswith(f"tlslog: error: {message}")


def test_follow_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("follow", str(tmp_path / "x.log"), "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 2
    assert r.stderr.startswith(f"tlslog: error: --listen 127.0.0.1:{port}: cannot listen: ")
    assert "choose a free port" in r.stderr


def test_backfill_errors(tmp_path: Path) -> None:
    r = run("backfill", str(tmp_path / "x.log"), "--out", str(tmp_path / "o.om"), "--step", "0")
    assert r.returncode == 2 and r.stderr.startswith("tlslog: error: --step '0': expected a positive duration")
    r = run("backfill", str(tmp_path / "missing.log"), "--out", str(tmp_path / "o.om"))
    assert r.returncode == 1
    assert f"tlslog: warning: {tmp_path / 'missing.log'}: cannot open: No such file or directory" in r.stderr
    assert "tlslog: error: no input could be read" in r.stderr
    assert "Traceback" not in r.stderr


def test_sigkill_in_the_middle_then_restart_counts_exactly(tmp_path: Path) -> None:
    """A crash (SIGKILL, no final checkpoint) while lines flow: the restart continues from the last snapshot, in
    which offsets, open events and counters agree, so the lines after it are read again and counted once."""
    log = tmp_path / "error.log"
    lines = [text + "\n" for text, _ in synth.generate(60000, seed=4)]
    truth = synth.write(str(tmp_path / "truth.log"), 60000, seed=4)
    cut = next(i for i in range(30000, 31000) if "SSL Library Error" not in lines[i] and "AH01114" not in lines[i])
    log.write_text("".join(lines[:cut]))
    port = free_port()
    positions = tmp_path / "positions.json"
    argv = [*TLSLOG, "follow", str(log), "--listen", f"127.0.0.1:{port}", "--positions", str(positions),
            "--poll-interval", "0.05", "--checkpoint-interval", "0.2", "--timezone", "UTC"]
    url = f"http://127.0.0.1:{port}/metrics"

    def lines_read() -> float:
        return sum(metric_values(http_get(url), "tlslog_lines_total").values())

    first = Daemon(argv, str(tmp_path / "follow0.log"))
    try:
        wait_for(lambda: lines_read() == cut, what="the first half read")
        wait_for(positions.exists, what="a checkpoint")
        with open(log, "a") as f:  # more lines, part of them read before the crash
            f.write("".join(lines[cut:45000]))
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.stop()
    # the snapshot left by the crash agrees with itself: its counters are the lines before its offset
    state = json.loads(positions.read_text())
    (entry,) = state["files"]
    counted = sum(n for _src, n in state["store"]["lines"])
    assert counted >= cut
    assert log.read_bytes()[:entry["offset"]].count(b"\n") == counted
    with open(log, "a") as f:
        f.write("".join(lines[45000:]))
    second = Daemon(argv, str(tmp_path / "follow1.log"))
    try:
        wait_for(lambda: lines_read() == 60000, what="the rest read after the restart")
        expected = {k: float(v) for k, v in truth.items()}
        wait_for(lambda: {k: v for k, v in by_label(metric_values(http_get(url), "tlslog_events_total"),
                                                    "category").items() if v} == expected,
                 what="the events of the whole file, each once")
        assert lines_read() == 60000
    finally:
        second.stop()
