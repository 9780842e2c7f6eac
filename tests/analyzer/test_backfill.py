"""tlslog backfill: exact OpenMetrics text for a small timeline, then the real path: a corpus spanning four days
(a rotated set, gzip included) -> ``tlslog backfill`` -> ``promtool tsdb create-blocks-from openmetrics`` -> a real
``prometheus`` on that data directory answering ``increase(...[1d])`` at a historical time with the corpus's count
for that day."""

from __future__ import annotations

import calendar
import gzip
import io
import json
import random
import subprocess
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
from exports_tools import TLSLOG, Daemon, free_port, http_get, tool, wait_for

from tlslog.backfill import Timeline, parse_step, write_openmetrics
from tlslog.catalog import CATEGORIES
from tlslog.synth import ERRORS, NORMAL

DAY = 86400
#: 2025-11-10 00:00:00 UTC: "last year's errors"
START = calendar.timegm((2025, 11, 10, 0, 0, 0))
DAYS = 4


@pytest.mark.parametrize("text, seconds", [("1m", 60), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400),
                                           ("15", 15), ("500ms", 0.5), ("1.5m", 90)])
def test_parse_step(text: str, seconds: float) -> None:
    assert parse_step(text) == seconds


@pytest.mark.parametrize("bad", ["", "0m", "-1m", "1w", "m", "1 m"])
def test_parse_step_errors_name_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=f"--step {bad!r}: expected a positive duration"):
        parse_step(bad)


def test_openmetrics_text_exactly() -> None:
    tl = Timeline(60.0)
    tl.add("no_shared_cipher", "apache", 120.0)  # exactly on a sample: counted in that sample
    tl.add("no_shared_cipher", "apache", 130.5)
    tl.add("client_rejected_cert", "apache", 61.0)
    tl.add("client_rejected_cert", "apache", None)  # no time: left out, counted apart
    out = io.StringIO()
    n = write_openmetrics(tl, out)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["# HELP tlslog_events TLS and proxy error events found in logs (backfilled with the "
                         "events' timestamps).", "# TYPE tlslog_events counter"]
    assert lines[-1] == "# EOF"
    series = {}
    for ln in lines[2:-1]:
        name_labels, value, ts = ln.rsplit(" ", 2)
        series.setdefault(name_labels, []).append((int(ts), int(value)))
    assert len(series) == len(CATEGORIES)  # every category, zeros included
    assert series['tlslog_events_total{category="no_shared_cipher",source="apache"}'] == [
        (60, 0), (120, 1), (180, 2)]
    assert series['tlslog_events_total{category="client_rejected_cert",source="apache"}'] == [
        (60, 0), (120, 1), (180, 1)]
    assert series['tlslog_events_total{category="handshake_timeout",source="apache"}'] == [
        (60, 0), (120, 0), (180, 0)]
    assert n == 3 * len(CATEGORIES)
    assert tl.untimed == 1


def test_no_events_is_just_eof() -> None:
    out = io.StringIO()
    assert write_openmetrics(Timeline(60.0), out) == 0
    assert out.getvalue() == "# EOF\n"


def _stamp(t: float) -> str:
    tm = time.gmtime(int(t))
    usec = int((t - int(t)) * 1e6)
    return time.strftime("[%a %b %d %H:%M:%S", tm) + f".{usec:06d} {tm.tm_year}] "


def make_corpus(directory: Path, seed: int = 5) -> Counter:
    """Four days of Apache 2.4 error log as a rotated set (error.log.2.gz, error.log.1, error.log);
    returns events per (category, UTC day index)."""
    rnd = random.Random(seed)
    truth: Counter = Counter()
    per_day: list[list[str]] = [[] for _ in range(DAYS)]
    t = START + 30.0
    end = START + DAYS * DAY
    while t < end - 60:
        day = int((t - START) // DAY)
        fields = dict(pid=2000 + rnd.randrange(4), tid=140000000000 + rnd.randrange(16) * 4096,
                      ip=f"198.51.100.{rnd.randrange(1, 255)}", port=rnd.randrange(1024, 65536),
                      child=rnd.randrange(1, 400), vhost="www.example.com:443")
        if rnd.random() < 0.3:
            category, group = rnd.choice(ERRORS)
            truth[(category, day)] += 1
            for tmpl in group:
                per_day[day].append(_stamp(t) + tmpl.format(**fields) + "\n")
        else:
            per_day[day].append(_stamp(t) + rnd.choice(NORMAL).format(**fields) + "\n")
        t += rnd.uniform(20, 400)
    with gzip.open(directory / "error.log.2.gz", "wt") as f:
        f.write("".join(per_day[0] + per_day[1]))
    (directory / "error.log.1").write_text("".join(per_day[2]))
    (directory / "error.log").write_text("".join(per_day[3]))
    return truth


def test_promtool_blocks_and_prometheus_answers_increase_per_day(tmp_path: Path) -> None:
    promtool, prometheus = tool("promtool"), tool("prometheus")
    logs = tmp_path / "logs"
    logs.mkdir()
    truth = make_corpus(logs)
    om = tmp_path / "tlslog.om"
    r = subprocess.run([*TLSLOG, "backfill", str(logs), "--out", str(om), "--step", "1m", "--timezone", "UTC"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert om.read_text().endswith("\n# EOF\n")
    data = tmp_path / "data"
    r = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    d = Daemon([prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
               str(tmp_path / "prometheus.log"))
    base = f"http://127.0.0.1:{port}"

    def query(expr: str, at: float) -> float:
        q = urllib.parse.urlencode({"query": expr, "time": str(at)})
        body = json.loads(http_get(f"{base}/api/v1/query?{q}"))
        assert body["status"] == "success", body
        return sum(float(res["value"][1]) for res in body["data"]["result"])

    try:
        wait_for(lambda: "Ready" in http_get(f"{base}/-/ready"), timeout=60, what="prometheus ready")
        for day in (1, 2):  # whole days inside the corpus: the window holds a sample at both ends
            at = START + (day + 1) * DAY
            got = query('increase(tlslog_events_total{category="client_rejected_cert"}[1d])', at)
            assert got == truth[("client_rejected_cert", day)] > 0, (day, got)
            got = query('sum(increase(tlslog_events_total[1d]))', at)
            assert got == sum(n for (c, dd), n in truth.items() if dd == day)
        # and the counter at its last sample is the whole corpus, per category
        end = START + DAYS * DAY
        for cat in ("client_rejected_cert", "no_shared_cipher", "backend_unavailable"):
            got = query(f'max_over_time(tlslog_events_total{{category="{cat}"}}[1d])', end)
            assert got == sum(n for (c, _d), n in truth.items() if c == cat)
    except AssertionError:
        print(d.output()[-3000:])
        raise
    finally:
        d.stop()


def test_jobs_give_the_same_file_and_scan_agrees(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    truth = make_corpus(logs)
    outs = []
    for jobs in ("1", "3"):
        om = tmp_path / f"j{jobs}.om"
        r = subprocess.run([*TLSLOG, "backfill", str(logs), "--out", str(om), "--step", "5m", "--timezone", "UTC",
                            "--jobs", jobs], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append(om.read_text())
    assert outs[0] == outs[1]
    # the last sample of each series is the scan's total for that category
    scan = subprocess.run([*TLSLOG, "scan", str(logs), "--timezone", "UTC", "--format", "json"], capture_output=True,
                          text=True, check=True)
    events = json.loads(scan.stdout)["events"]
    last = {}
    for ln in outs[0].splitlines():
        if ln.startswith("tlslog_events_total{"):
            cat = ln.split('category="', 1)[1].split('"', 1)[0]
            last[cat] = int(ln.rsplit(" ", 2)[1])
    assert last == events
    assert sum(events.values()) == sum(truth.values())
