"""Smoke test of the bench harness: its pieces work, on real tools, in one tiny round.

Asserts structure and protocol facts (full handshakes did not resume, resumed
ones did), never speed. Runs in about 20 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import logbench, procs, report, run
from bench.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("nginx", "apache2", "wrk", "gcc", "taskset", "hyperfine")


def _missing() -> list[str]:
    return [t for t in NEEDED if not (shutil.which(t) or Path(f"/usr/sbin/{t}").exists())]


needs_tools = pytest.mark.skipif(
    bool(_missing()), reason=f"LOUD SKIP: bench tools missing: {_missing()}; run `bash bench/install-tools.sh`"
)


def test_cpu_seconds_of_a_tree_count_a_busy_child():
    # a parent that forks a child which burns CPU: the tree's delta must include the child's time
    code = "import os,time\nif os.fork()==0:\n    t=time.process_time()\n    while time.process_time()-t<0.3: pass\n    time.sleep(5)\nelse:\n    time.sleep(5)\n"
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        before = procs.sample(p.pid)
        time.sleep(0.8)
        after = procs.sample(p.pid)
        assert len(after.per_pid) == 2, after.per_pid
        assert procs.cpu_delta(before, after) > 0.1
        worker, total = procs.tree_rss(p.pid)
        assert 0 < worker <= total
    finally:
        procs.stop(p)
    assert p.poll() is not None


def test_free_port_is_bindable():
    import socket
    port = procs.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_synthetic_log_has_about_ten_percent_tls_lines(tmp_path):
    name, write, literal, six = logbench.generator()  # tlslog.synth: the one generator
    assert name == "tlslog.synth"
    truth = write(tmp_path / "e.log", 20_000)
    lines = (tmp_path / "e.log").read_text().splitlines()
    assert len(lines) == 20_000
    tls = sum(1 for l in lines if any(p in l for p in six.split("|")))
    assert 0.08 < tls / len(lines) < 0.12
    assert sum(1 for l in lines if literal in l) > 0 and sum(truth.values()) > 0
    assert all(l.startswith("[") and "] [" in l for l in lines[:100])


def test_bad_options_are_refused_with_the_valid_choices(capsys):
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "keepalive,nonsense"])
    err = capsys.readouterr().err
    assert "nonsense" in err and "keepalive" in err and "full-rsa" in err


@needs_tools
def test_one_tiny_round(tmp_path):
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "bench.run", "--quick", "--only", "keepalive,full-ecdsa,resumed",
            "--fronts", "nginx,apache,twisted", "--duration", "1", "--warmup", "0", "--out", str(out)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["machine"]["versions"]["nginx"]
    trials = data["trials"]
    assert {(t["scenario"], t["front"]) for t in trials} == {
        (s, f) for s in ("keepalive", "full-ecdsa", "resumed") for f in ("nginx", "apache", "twisted")
    }
    for t in trials:
        assert "error" not in t, t
        assert t["requests"] > 0 and t["cpu_seconds"] > 0 and t["rss_worker_mib"] > 1
        assert t["p50_ms"] <= t["p99_ms"]
    by = {(t["scenario"], t["front"]): t for t in trials}
    for front in ("nginx", "apache", "twisted"):
        # the server-side proof: the shim stopped every resumption, plain wrk resumed
        assert by[("full-ecdsa", front)]["resumed"] == 0
        assert by[("full-ecdsa", front)]["full"] == by[("full-ecdsa", front)]["requests"]
        assert by[("resumed", front)]["resumption_check"].startswith("ok")
        assert by[("keepalive", front)]["resumption_check"] == "n/a"
    md = (out / "results.md").read_text()
    assert "| 1 | keepalive | twisted |" in md and "| 1 | full-ecdsa | nginx |" in md
    # the ratio table is about the last front given when tlsfront is not in the run
    assert "twisted/nginx CPU per unit" in md


@needs_tools
def test_logbench_tiny(tmp_path):
    from bench import logbench
    lb = logbench.run(tmp_path / "r", lines=5_000, quick=True)
    assert set(lb["median_seconds"]) >= {"cat", "grep -c literal", "grep -cE six", "zcat | grep -c"}
    assert lb["preflight"]["grep -cE six"]["exit"] == 0
    # the timed commands really read the generated log: grep's count is the file's count
    log = next((tmp_path / "logbench").glob("apache-error-*-5000-v*[0-9].log"))
    expected = sum(logbench.generator()[2] in line for line in log.read_text().splitlines())
    assert expected > 0
    assert int(lb["preflight"]["grep -c literal"]["stdout_head"]) == expected
    assert int(lb["preflight"]["zcat | grep -c"]["stdout_head"]) == expected
    if shutil.which("mtail") or os.environ.get("CI"):  # CI installs it (tests/install-sysdeps.sh): it must run there
        # mtail ran, timed in its own group; its counters equal each pattern's line count
        # (counted here in Python, independently of the harness's own grep check)
        assert "mtail" not in lb["skipped"], lb["skipped"]
        assert lb["median_seconds"]["mtail"] > 0 and lb["cpu_seconds"]["mtail"] > 0
        text = log.read_text().splitlines()
        by_pattern = {p: sum(p in line for line in text) for p in logbench.TLSLOG_SYNTH_SIX.split("|")}
        assert {logbench.mtail_rules()[c]: n for c, n in lb["mtail_counts"].items()} == by_pattern
        assert all(by_pattern.values())
        assert lb["mtail_vs_grep"] == "ok: each of the 6 counters equals grep -c of its pattern"
        if lb["tlslog"]:
            r = lb["ratios"]["mtail / tlslog scan (target >= 7)"]
            assert r == lb["median_seconds"]["mtail"] / lb["median_seconds"]["tlslog scan"]
        assert "| `mtail` |" in logbench.table(lb)
    else:
        # a machine without mtail (make test installs it; a bare checkout may not have it): the row says why
        assert lb["skipped"]["mtail"] == logbench.MTAIL_ABSENT
        assert "mtail" not in lb["median_seconds"] and lb["ratios"]["mtail / tlslog scan (target >= 7)"] is None
        assert "skipped `mtail`: not installed" in logbench.table(lb)
    if lb["generator"] == "tlslog.synth" and lb["tlslog"]:
        # the harness compares the scan with the generator's truth and says so (tlslog's own
        # tests own its correctness; the bench only reports it)
        assert lb["events_vs_truth"].startswith(("ok: every category matches", "MISMATCH: ")), lb["events_vs_truth"]
    assert "| ratio | value |" in logbench.table(lb)
    if lb["tlslog"]:
        rate = lb["ratios"]["lines/s: --jobs 2 on two files / one process on one file (target ~2)"]
        assert rate == pytest.approx(lb["lines_per_second"]["tlslog scan 2 files --jobs 2"]
                                     / lb["lines_per_second"]["tlslog scan"])
    for name, secs in lb["median_seconds"].items():  # the two-file commands read twice the lines
        lines = 5_000 * (2 if "2 files" in name else 1)
        assert lb["lines_per_second"][name] == pytest.approx(lines / secs), name


def test_mtail_program_counts_grep_six_patterns():
    # the shipped program has one counter per pattern grep -cE is timed with
    rules = logbench.mtail_rules()
    assert sorted(rules.values()) == sorted(logbench.TLSLOG_SYNTH_SIX.split("|"))
    assert len(set(rules)) == 6 and logbench.mtail_program_problem() is None


def test_mtail_program_that_drifts_from_grep_is_refused(tmp_path):
    bad = tmp_path / "five.mtail"
    bad.write_text(logbench.MTAIL_PROGRAM.read_text().replace("/AH01114/", "/AH01115/"))
    why = logbench.mtail_program_problem(bad)
    assert why is not None and str(bad) in why and "AH01115" in why and "TLSLOG_SYNTH_SIX" in why


def test_mtail_counts_are_checked_against_grep(tmp_path):
    # mtail's one-shot JSON shape (3.0.0~rc50), one counter off by one: the check names it
    log = tmp_path / "e.log"
    log.write_text("x AH02008: a\nx AH02008: b\nx SSL Library Error: c\nnothing\n")

    def metric(n: int) -> list:
        return [{"Name": "n", "Kind": 1, "LabelValues": [{"Value": {"Value": n, "Time": 1}}]}]
    counts = {c: metric(0) for c in logbench.mtail_rules()}
    counts["ah02008_handshake_failed"] = metric(2)
    counts["ssl_library_error"] = metric(1)
    assert logbench.check_mtail(json.dumps(counts), log).startswith("ok: each of the 6 counters")
    counts["ssl_library_error"] = metric(2)
    got = logbench.check_mtail(json.dumps(counts), log)
    assert got == "MISMATCH: counter: (pattern, mtail, grep -c) {'ssl_library_error': ('SSL Library Error', 2, 1)}"
    assert logbench.check_mtail("Listening on 127.0.0.1:0", log).startswith("could not read mtail's JSON")


@needs_tools
def test_srcaddr_shim_spreads_client_addresses(tmp_path):
    # a plain TCP server records its peers; curl, preloaded with the shim, connects 4 times
    import socket
    import threading
    from bench import loadgen
    shim = loadgen.build_srcaddr(tmp_path)
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    peers = []

    def serve():
        for _ in range(4):
            conn, peer = srv.accept()
            peers.append(peer[0])
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    env = dict(os.environ, LD_PRELOAD=str(shim), BENCH_SRC_ADDRS="3")
    # one process, four connections (the server closes each): the shim's counter goes round
    subprocess.run(["curl", "-s", *[f"http://127.0.0.1:{port}/{i}" for i in range(4)]],
                   env=env, check=True, timeout=10, stdout=subprocess.DEVNULL)
    t.join(10)
    srv.close()
    assert peers == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]


def test_ratio_table_from_made_up_trials():
    def t(front, scenario, cpu_us, p99):
        return {"front": front, "scenario": scenario, "workers": 1, "requests_per_second": 1.0, "p50_ms": 1.0,
                "p99_ms": p99, "cpu_per_unit_us": cpu_us, "units_per_cpu_second": 1e6 / cpu_us,
                "rss_worker_mib": 10.0, "rss_total_mib": 10.0, "cpu_seconds": 1.0, "units": 1.0,
                "resumption_check": "n/a", "errors": {"connect": 0}}
    trials = [t("nginx", "keepalive", 20, 2.0), t("haproxy", "keepalive", 25, 2.0),
              t("tlsfront", "keepalive", 100, 5.0), t("tlsfront", "keepalive", 60, 4.0), t("tlsfront", "keepalive", 80, 9.0)]
    summary = report.summarize(trials)
    assert summary[(1, "keepalive", "tlsfront")]["cpu_per_unit_us"] == 80  # the median of three
    table = report.ratio_table(summary)
    # 80/20 = 4.00 times nginx's CPU; issue ratio 20/80 = 0.25 meets the 0.25 target; p99 median 5 / 2
    assert "| 1 | keepalive | 4.00 | 3.20 | 0.25 | >= 0.25 | yes | 2.50 |" in table
    assert SCENARIOS["keepalive"].target_vs_nginx == 0.25
    work = report.work_table(summary)
    assert "| tlsfront | 12,500 |" in work and "| nginx | 50,000 |" in work  # 1e6 / median(100, 60, 80) µs


def test_profile_summary_attributes_samples_to_areas():
    from bench import profile
    collapsed = "\n".join([
        "main (tlsfront/cli.py:1);doRead (twisted/internet/tcp.py:278) 30",
        "main (tlsfront/cli.py:1);dataReceived (tlsfront/frontend.py:9);feed (tlsfront/http1.py:3) 60",
        "_bootstrap (threading.py:1);wait (threading.py:327) 500",  # an idle pool thread: ignored
        "main (tlsfront/cli.py:1);mystery (x.py:1) 10",
    ])
    text = profile.summarize(collapsed)
    assert text.startswith("100 samples")
    assert "60.0%  tlsfront http1 (parse/serialise)" in text
    assert "30.0%  reactor: socket send/recv" in text
    assert "10.0%  other" in text
