"""Issue 9's rotation test with the real command: a writer appends synthetic Apache 2.4 error log lines with a known
number of events while a rotator rotates the file 100 times (50 rename-and-create, 50 copytruncate, alternating),
and ``tlslog follow --listen --positions`` is stopped (SIGTERM) in the middle, a rotation done while it is down, and
started again from its positions file. At the end /metrics (and the textfile written at exit) hold exactly the
number of lines and the events per category that were written: nothing counted twice, nothing skipped.

It writes the issue's 1,000,000 lines (about 190 MB; 23 s on a quiet 2-core machine, the run being bounded by
the 100 rotations' pacing more than by the line count); ``TLSLOG_FOLLOW_LINES`` sets another count.

How the parts interact (all real: files, a subprocess, HTTP scrapes):

* the writer thread writes batches of whole events (an ``AH02008`` and its ``SSL Library Error:`` line are written
  together, as mod_ssl writes them in the same instant); after a rename rotation it goes on writing two more
  batches into the old (renamed) file before it "reopens" its log, as a server does until logrotate's postrotate
  signal reaches it, so the follower must drain the old file;
* copytruncate copies and truncates under the writer's lock: logrotate(8) warns that lines written between its copy
  and its truncate are lost for every reader, so the truth would be unknowable otherwise. The lines written after
  the follower's last read and before the truncation exist only in the copy, which the follower must find;
* real rotations are hours apart; a file that lives shorter than one poll cannot be seen by any poller following a
  name (``tail -F`` included). So the rotator waits until ``tlslog_rotations_total`` shows a rotation, and until
  the follower has read at least one line of the current file, before the next one. It does not wait for the
  follower to catch up: the lines written between its last read and a copytruncate are still only in the copy.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from exports_tools import TLSLOG, Daemon, by_label, free_port, http_get, metric_values, wait_for

from tlslog import synth

LINES = int(os.environ.get("TLSLOG_FOLLOW_LINES", "1000000"))
ROTATIONS = 100
BATCH_LINES = 500
RESTART_AT = 50


def batches_of_whole_events(n: int) -> tuple[list[bytes], Counter]:
    out: list[bytes] = []
    truth: Counter = Counter()
    buf: list[str] = []
    cont = ("SSL Library Error:", "AH01114:")
    for text, category in synth.generate(n, seed=99):
        if len(buf) >= BATCH_LINES and not any(c in text for c in cont):
            out.append("".join(buf).encode())
            buf = []
        buf.append(text + "\n")
        if category:
            truth[category] += 1
    out.append("".join(buf).encode())
    return out, truth


class Writer(threading.Thread):
    """Writes segment after segment as the test allows; honours rename rotations like a server would."""

    def __init__(self, log: Path, segments: list[list[bytes]]) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.segments = segments
        self.lock = threading.Lock()
        self.allowed = threading.Semaphore(0)
        self.done = [threading.Event() for _ in segments]
        self.reopen_after = -1  # batches still to write into the old file after a rename
        self.written = 0  # lines written so far
        self.generation_start = 0  # lines written before the current file (generation) began
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            f = open(self.log, "ab")
            for i, seg in enumerate(self.segments):
                self.allowed.acquire()
                for batch in seg:
                    with self.lock:
                        if self.reopen_after == 0:
                            f.close()
                            f = open(self.log, "ab")
                            self.generation_start = self.written
                        if self.reopen_after >= 0:
                            self.reopen_after -= 1
                        f.write(batch)
                        f.flush()
                        self.written += batch.count(b"\n")
                self.done[i].set()
            with self.lock:
                f.close()
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.error = exc
            for ev in self.done:
                ev.set()


def test_million_line_writer_with_100_rotations_and_a_restart(tmp_path: Path) -> None:
    t0 = time.monotonic()
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    batches, truth = batches_of_whole_events(LINES)
    per = len(batches) // (ROTATIONS + 1)
    segments = [batches[i * per:(i + 1) * per] for i in range(ROTATIONS)] + [batches[ROTATIONS * per:]]
    assert all(segments)
    port = free_port()
    positions = tmp_path / "positions.json"
    textfile = tmp_path / "tlslog.prom"
    argv = [*TLSLOG, "follow", str(log), "--listen", f"127.0.0.1:{port}", "--positions", str(positions),
            "--textfile", str(textfile), "--poll-interval", "0.05", "--checkpoint-interval", "1",
            "--drain-seconds", "5", "--timezone", "UTC"]
    url = f"http://127.0.0.1:{port}/metrics"
    logs: list[Daemon] = []

    def start() -> Daemon:
        d = Daemon(argv, str(tmp_path / f"follow{len(logs)}.log"))
        logs.append(d)
        wait_for(lambda: http_get(url), timeout=30, what="tlslog follow serving /metrics")
        return d

    def rotations() -> dict[str, float]:
        return by_label(metric_values(http_get(url), "tlslog_rotations_total"), "kind")

    def lines_read() -> float:
        return sum(metric_values(http_get(url), "tlslog_lines_total").values())

    follower = start()
    writer = Writer(log, segments)
    writer.start()
    writer.allowed.release()
    done = Counter()
    try:
        for i in range(ROTATIONS):
            writer.done[i].wait(120)
            assert writer.error is None, writer.error
            writer.allowed.release()  # the writer goes on with the next segment while we rotate
            if i == RESTART_AT:
                assert follower.stop() == 0, follower.output()
            else:
                wait_for(lambda: lines_read() > writer.generation_start, timeout=60,
                         what=f"the follower to read a line of the file before rotation {i}")
            style = "rename" if i % 2 == 0 else "copytruncate"
            with writer.lock:
                if style == "rename":
                    os.rename(log, tmp_path / f"app.log.{i}")
                    log.write_bytes(b"")  # logrotate's "create"
                    writer.reopen_after = 2
                    writer.generation_start = LINES + 1  # until the writer reopens the name
                else:
                    shutil.copyfile(log, tmp_path / f"app.log.{i}")
                    os.truncate(log, 0)
                    writer.generation_start = writer.written
            done[style] += 1
            if i == RESTART_AT:
                writer.done[i + 1].wait(120)  # lines written while the follower is down, across the rotation
                follower = start()
            wait_for(lambda: rotations().get(style, 0) >= done[style], timeout=60,
                     what=f"the follower to notice rotation {i} ({style})")
        writer.done[-1].wait(120)
        writer.join(30)
        assert writer.error is None, writer.error

        def final_counts():
            text = http_get(url)
            lines = sum(metric_values(text, "tlslog_lines_total").values())
            events = {k: v for k, v in by_label(metric_values(text, "tlslog_events_total"), "category").items() if v}
            followed = sum(metric_values(text, "tlslog_files_followed").values())
            return (lines, events, followed) if lines >= LINES and followed == 1 else None

        lines, events, _ = wait_for(final_counts, timeout=120, interval=0.2, what="the follower to catch up")
        assert lines == LINES
        assert events == {k: float(v) for k, v in truth.items()}
        assert rotations() == {"rename": ROTATIONS / 2, "copytruncate": ROTATIONS / 2}
        # the textfile written at exit says the same; no copy was ever missing
        assert follower.stop() == 0, follower.output()
        assert not any("no copy starting like it" in d.output() for d in logs), [d.output() for d in logs]
        text = textfile.read_text()
        assert sum(metric_values(text, "tlslog_lines_total").values()) == LINES
        assert {k: v for k, v in by_label(metric_values(text, "tlslog_events_total"), "category").items() if v} \
            == {k: float(v) for k, v in truth.items()}
        elapsed = time.monotonic() - t0
        print(f"{LINES} lines, {sum(truth.values())} events, {ROTATIONS} rotations, restart at {RESTART_AT}: "
              f"{elapsed:.1f} s", file=sys.stderr)
    finally:
        for d in logs:
            if d.alive():
                d.proc.send_signal(signal.SIGTERM)
            d.stop()
