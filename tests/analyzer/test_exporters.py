"""tlslog.exporters: the collector over the store (fresh registry per test, values read with get_sample_value),
vhost bounding, the atomic textfile, /metrics over HTTP, and ``tlslog scan --push`` into the real
``prometheus-pushgateway`` started on 127.0.0.1 (no persistence)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from exports_tools import TLSLOG, Daemon, by_label, free_port, http_get, metric_values, tool, wait_for

from tlslog import exporters
from tlslog.catalog import CATEGORIES
from tlslog.store import Store

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(str(p) for p in (ROOT / "tests" / "data" / "logs").glob("*/*") if p.is_file())


def store_with(events: dict[tuple[str, str, str], int]) -> Store:
    s = Store()
    for (cat, src, vh), n in events.items():
        for _ in range(n):
            s.add_event(cat, src, vh or None, 1795000000.0, (0, 0), b"x")
    s.lines["apache"] = 100
    s.unparsed["apache"] = 3
    return s


def test_collector_values_and_every_category_pre_initialised() -> None:
    store = store_with({("no_shared_cipher", "apache", "www:443"): 2, ("client_rejected_cert", "apache", ""): 1})
    reg = exporters.registry_for(lambda: store)
    v = reg.get_sample_value
    assert v("tlslog_events_total", {"category": "no_shared_cipher", "source": "apache", "vhost": "www:443"}) == 2
    assert v("tlslog_events_total", {"category": "client_rejected_cert", "source": "apache", "vhost": ""}) == 1
    for cat in CATEGORIES:  # zero, not absent: rate() and alerts work from the first scrape
        assert v("tlslog_events_total", {"category": cat, "source": "apache", "vhost": ""}) is not None
    assert v("tlslog_lines_total", {"source": "apache"}) == 100
    assert v("tlslog_unparsed_lines_total", {"source": "apache"}) == 3
    assert v("tlslog_last_event_timestamp_seconds", {"category": "no_shared_cipher"}) == 1795000000.0
    # a scrape sees the store as it is now
    store.add_event("no_shared_cipher", "apache", "www:443", 1795000001.0, (0, 1), b"y")
    assert v("tlslog_events_total", {"category": "no_shared_cipher", "source": "apache", "vhost": "www:443"}) == 3


def test_vhost_label_is_bounded() -> None:
    events = {("no_shared_cipher", "apache", f"v{i}.example:443"): 10 - i for i in range(6)}
    reg = exporters.registry_for(lambda: store_with(events), max_vhosts=3)
    text = exporters.exposition(reg).decode()
    vhosts = by_label(metric_values(text, "tlslog_events_total"), "vhost")
    assert vhosts == {"": 0, "v0.example:443": 10, "v1.example:443": 9, "v2.example:443": 8, "other": 7 + 6 + 5}


def test_follow_families_replace_the_scan_file_counters() -> None:
    store = store_with({})
    reg = exporters.registry_for(lambda: store, extra=lambda: exporters.follow_families(2, {"rename": 4}, 1))
    v = reg.get_sample_value
    assert v("tlslog_files_followed") == 2
    assert v("tlslog_rotations_total", {"kind": "rename"}) == 4
    assert v("tlslog_rotations_total", {"kind": "copytruncate"}) == 0
    assert v("tlslog_read_errors_total") == 1
    assert v("tlslog_files_total") is None


def test_no_client_address_or_user_agent_in_labels() -> None:
    """Labels come from a fixed set of names; a scan of the whole corpus shows which ones."""
    out = subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "prometheus", *CORPUS],
                         capture_output=True, text=True, check=True).stdout
    from prometheus_client.parser import text_string_to_metric_families

    names = {k for fam in text_string_to_metric_families(out) for s in fam.samples for k in s.labels}
    assert names <= {"category", "source", "vhost", "status_class", "protocol", "cipher"}


def test_textfile_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "tlslog.prom"
    reg = exporters.registry_for(lambda: store_with({("no_shared_cipher", "apache", ""): 5}))
    exporters.write_textfile(str(target), reg)
    exporters.write_textfile(str(target), reg)
    assert os.listdir(tmp_path) == ["tlslog.prom"]
    vals = metric_values(target.read_text(), "tlslog_events_total")
    assert by_label(vals, "category")["no_shared_cipher"] == 5
    with pytest.raises(exporters.ExportError) as err:
        exporters.write_textfile(str(tmp_path / "missing-dir" / "x.prom"), reg)
    assert str(err.value).startswith(f"--textfile {tmp_path}/missing-dir/x.prom: cannot write: ")


def test_metrics_over_http(tmp_path: Path) -> None:
    store = store_with({("backend_timeout", "nginx", "shop:443"): 4})
    reg = exporters.registry_for(lambda: store)
    server, _thread = exporters.serve(f"127.0.0.1:{free_port()}", reg)
    try:
        host, port = server.server_address[:2]
        text = http_get(f"http://{host}:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert by_label(metric_values(text, "tlslog_events_total"), "category")["backend_timeout"] == 4
    # no process/platform collectors: only the log's numbers
    assert all(line.startswith(("# ", "tlslog_")) for line in text.splitlines())


@pytest.mark.parametrize("listen, expected", [("127.0.0.1:9469", ("127.0.0.1", 9469)), ("[::1]:80", ("::1", 80)),
                                              (":9469", ("0.0.0.0", 9469))])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert exporters.parse_listen(listen) == expected


@pytest.mark.parametrize("bad", ["9469", "host:", "host:99999", "host:http"])
def test_parse_listen_errors_name_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=f"--listen '{bad}': expected HOST:PORT"):
        exporters.parse_listen(bad)


@pytest.fixture
def pushgateway(tmp_path: Path):
    binary = tool("prometheus-pushgateway")
    port = free_port()
    d = Daemon([binary, f"--web.listen-address=127.0.0.1:{port}"], str(tmp_path / "pushgateway.log"))
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready") is not None, what="pushgateway ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        d.stop()


def test_scan_push_and_textfile_into_the_real_pushgateway(tmp_path: Path, pushgateway: str) -> None:
    textfile = tmp_path / "tlslog.prom"
    r = subprocess.run([*TLSLOG, "scan", "--timezone", "UTC", "--format", "json", "--textfile", str(textfile),
                        "--push", pushgateway, "--job", "tlslog_test", *CORPUS], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    expected = {k: float(v) for k, v in json.loads(r.stdout)["events"].items()}
    assert sum(expected.values()) > 0
    pushed = metric_values(http_get(f"{pushgateway}/metrics"), "tlslog_events_total")
    assert all(dict(k)["job"] == "tlslog_test" for k in pushed)
    assert by_label(pushed, "category") == expected
    assert by_label(metric_values(textfile.read_text(), "tlslog_events_total"), "category") == expected
    lines = json.loads(r.stdout)["lines"]
    assert sum(metric_values(http_get(f"{pushgateway}/metrics"), "tlslog_lines_total").values()) == lines


def test_push_to_nothing_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = subprocess.run([*TLSLOG, "scan", "--format", "json", "--push", url, CORPUS[0]], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert f"tlslog: error: --push {url}: cannot push job 'tlslog': " in r.stderr
    assert "check that a Pushgateway listens there" in r.stderr
    assert "Traceback" not in r.stderr
