"""Static checks of the Grafana dashboards and provisioning (issue 10); the live check against a real Prometheus is
test_dashboards_prometheus.py.

What is checked: the committed JSON is what grafana/build_dashboards.py writes; valid JSON with stable uids and unique
panel ids; every panel, target, annotation and query variable goes through the ``${datasource}`` variable; ``vhost``
and ``instance`` variables exist; panels fit the 24-column grid without overlapping; units, descriptions and legends
are set; every expression parses (promtool, with the variables substituted); remedies are there; the provisioning
files point at the dashboards and the datasource the dashboards default to.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dashboard_queries import (DASHBOARDS, DS_VAR, FILES, REPO, all_panels, load, metric_names, queries,
                               substitute, variable_queries)

PROMTOOL = shutil.which("promtool")
GRAFANA = REPO / "grafana"
UIDS = {"tlsfront.json": "tlsfront-overview", "tlslog.json": "tlslog-events"}
SAMPLE_VALUES = {"instance": "127.0.0.1:9180", "vhost": "www.example.com:443", "source": "apache",
                 "datasource": "tlsfront-prometheus", "__rate_interval": "1m", "__range": "1h", "__interval": "15s"}


def _builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module", params=FILES)
def dash(request) -> tuple[str, dict]:
    return request.param, load(request.param)


def test_committed_json_is_what_the_builder_writes() -> None:
    builder = _builder()
    for name, build in builder.DASHBOARDS.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == builder.render(build), (
            f"grafana/dashboards/{name} is stale: run .venv/bin/python grafana/build_dashboards.py")
    assert sorted(builder.DASHBOARDS) == sorted(FILES)


def test_builder_check_mode_detects_a_stale_file(tmp_path, monkeypatch) -> None:
    builder = _builder()
    monkeypatch.setattr(builder, "OUT", tmp_path)
    assert builder.main([]) == 0 and builder.main(["--check"]) == 0
    (tmp_path / "tlslog.json").write_text("{}")
    assert builder.main(["--check"]) == 1


def test_valid_json_stable_uid_and_schema(dash) -> None:
    name, d = dash
    json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))  # strict JSON (no NaN, no comments)
    assert d["uid"] == UIDS[name]
    assert d["schemaVersion"] == 39 and d["id"] is None
    assert d["title"] and d["description"]
    assert len({load(f)["uid"] for f in FILES}) == len(FILES)


def test_unique_panel_ids_and_titles(dash) -> None:
    name, d = dash
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids {sorted(i for i in ids if ids.count(i) > 1)}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    titles = [p["title"] for p in all_panels(d)]
    assert len(titles) == len(set(titles)), f"{name}: two panels with one title"


def test_every_panel_target_and_query_goes_through_the_datasource_variable(dash) -> None:
    name, d = dash
    wrong = []
    for p in all_panels(d):
        if p["type"] == "row":
            assert not p.get("targets"), f"{name}: row {p['title']!r} has targets"
            continue
        if p.get("datasource") != DS_VAR:
            wrong.append(f"panel {p['id']} {p['title']!r}: {p.get('datasource')}")
        assert p.get("targets"), f"{name}: panel {p['id']} {p['title']!r} has no query"
        for t in p["targets"]:
            if t.get("datasource") != DS_VAR:
                wrong.append(f"panel {p['id']} target {t['refId']}: {t.get('datasource')}")
    for a in d["annotations"]["list"]:
        if not a.get("builtIn") and a.get("datasource") != DS_VAR:
            wrong.append(f"annotation {a['name']!r}: {a.get('datasource')}")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    for v in variables.values():
        if v["type"] == "query" and v.get("datasource") != DS_VAR:
            wrong.append(f"variable {v['name']}: {v.get('datasource')}")
    assert not wrong, f"{name}: not through ${{datasource}}: {wrong}"
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert "${datasource}" not in json.dumps(ds)  # the variable does not refer to itself


def test_vhost_and_instance_variables(dash) -> None:
    name, d = dash
    vq = variable_queries(name)
    assert {"instance", "vhost"} <= set(vq)
    assert vq["instance"][1] == "instance" and vq["vhost"][1] == "vhost"
    assert "$instance" in vq["vhost"][0], "vhost values should follow the selected instances"
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            assert v["multi"] and v["includeAll"] and v["allValue"] == ".*", v["name"]
    # every selector of a per-process metric filters on the instance; per-vhost metrics on the vhost too
    for q in queries(name):
        if 'job=""' in q.expr:  # backfilled series: no job, instance or vhost label by construction
            continue
        for sel in re.findall(r"(\w+)\{([^}]*)\}", q.expr):
            assert 'instance=~"$instance"' in sel[1], f"no instance filter in {sel} of {q}"


def test_grid_fits_a_laptop_screen_without_overlaps(dash) -> None:
    check_grid(*dash)


def check_grid(name: str, d: dict) -> None:
    """Every panel inside the 24 columns, 1 to 10 rows tall (a row is 30 px: a panel taller
    than 10 pushes its neighbours below a laptop's first screen), at least 4 columns wide,
    no two panels on one cell, and the panels grouped in rows."""
    taken: dict[tuple[int, int], str] = {}
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{name}: {p['title']!r} leaves the 24 columns: {g}"
        assert g["y"] >= 0, f"{name}: {p['title']!r} is above the dashboard: {g}"
        # a panel 0 wide or 0 tall takes no cell: it would pass the overlap check below whatever its place
        assert g["w"] >= 1 and g["h"] >= 1, f"{name}: {p['title']!r} has no size: {g}"
        assert g["h"] <= 10, f"{name}: {p['title']!r} is too tall for a laptop screen: {g}"
        if p["type"] != "row":
            assert g["w"] >= 4, f"{name}: {p['title']!r} too narrow to read: {g}"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{name}: {p['title']!r} overlaps {taken[(x, y)]!r} at {(x, y)}"
                taken[(x, y)] = p["title"]
    rows = [p for p in d["panels"] if p["type"] == "row"]
    assert len(rows) >= 3 and d["panels"][0]["type"] == "row", "panels are grouped in rows"


@pytest.mark.parametrize("change, message", [
    (lambda g: g.update(h=11), "too tall"),
    (lambda g: g.update(h=0), "has no size"),
    (lambda g: g.update(w=0), "has no size"),
    (lambda g: g.update(y=-1), "above the dashboard"),
    (lambda g: g.update(x=g["x"] + 1, w=24), "leaves the 24 columns"),
    (lambda g: g.update(y=g["y"] - 1), "overlaps"),
])
def test_grid_check_fails_on_a_bad_panel(dash, change, message) -> None:
    """The grid check is not vacuous: one panel moved or resized the wrong way fails it."""
    import copy

    name, d = dash
    bad = copy.deepcopy(d)
    panel = next(p for p in bad["panels"] if p["type"] != "row" and p["gridPos"]["y"] > 1)
    change(panel["gridPos"])
    with pytest.raises(AssertionError, match=message):
        check_grid(name, bad)


def test_units_descriptions_and_legends(dash) -> None:
    name, d = dash
    for p in all_panels(d):
        if p["type"] == "row":
            continue
        assert p["fieldConfig"]["defaults"].get("unit"), f"{name}: {p['title']!r} has no unit"
        assert len(p["description"]) > 40, f"{name}: {p['title']!r} needs a description"
        if p["type"] in ("timeseries", "bargauge", "stat"):
            for t in p["targets"]:
                assert t["legendFormat"] not in ("", "__auto"), f"{name}: {p['title']!r} {t['refId']} legend"
        if p["type"] == "timeseries":
            assert p["options"]["legend"]["showLegend"]


def test_queries_name_only_our_metrics() -> None:
    for name in FILES:
        prefix = {"tlsfront.json": "tlsfront_", "tlslog.json": "tlslog_"}[name]
        for q in queries(name):
            names = metric_names(q.expr)
            assert names, f"no metric in {q}"
            assert all(n.startswith(prefix) for n in names), f"{q}: {names}"


@pytest.mark.parametrize("expr, names", [
    ('sum by (vhost) (rate(tlsfront_http_requests_total{code="5xx"}[5m])) / time()', {"tlsfront_http_requests_total"}),
    ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"b|c"}[1m])))', {"a_bucket"}),
    ("count(up{job=\"x\"} == 0) or vector(0)", {"up"}),
    ('sum(x) / on (instance) group_left (version) build_info', {"x", "build_info"}),
    ('max(a offset 5m) and b unless c', {"a", "b", "c"}),
    ('sum(increase(m{l="a{b}"}[1h])) * 1e3', {"m"}),
    ('clamp_min(sum(m{i=~"$i"}) - (sum(m offset $__range) or sum(m) * 0), 0)', {"m"}),
], ids=["ratio", "quantile", "or-vector", "group-left", "keywords", "braces-in-string", "variables"])
def test_metric_names_parser(expr, names) -> None:
    assert metric_names(expr) == names


@pytest.mark.skipif(PROMTOOL is None, reason="LOUD: promtool is needed (tests/install-sysdeps.sh installs it)")
def test_every_expression_parses(tmp_path) -> None:
    """promtool parses PromQL: every query, variables substituted, as a recording rule (one group per query so
    that the error names it)."""
    groups = []
    def add(what: str, expr: str) -> None:
        groups.append({"name": what, "rules": [{"record": f"dashboard:query_{len(groups)}",
                                                "expr": substitute(expr, SAMPLE_VALUES)}]})

    for name in FILES:
        for i, q in enumerate(queries(name)):
            add(f"{name} {q.panel} {q.ref} #{i}", q.expr)
        for var, (sel, _label) in variable_queries(name).items():
            if sel:
                add(f"{name} variable {var}", sel)
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": groups}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stdout + r.stderr
    assert f"SUCCESS: {len(groups)} rules found" in r.stdout


def test_tlsfront_dashboard_covers_the_issue() -> None:
    d = load("tlsfront.json")
    exprs = " ".join(q.expr for q in queries("tlsfront.json"))
    for needle in ("histogram_quantile", "tlsfront_http_request_duration_seconds_bucket",
                   "tlsfront_tls_handshake_failures_total", "by (reason)", "tlsfront_tls_resumptions_total",
                   "tlsfront_tls_negotiated_total", "by (protocol)", "cipher", "tlsfront_backend_errors_total",
                   "tlsfront_backend_up", "tlsfront_certificate_expiry_timestamp_seconds",
                   "tlsfront_worker_restarts_total", "tlsfront_config_reloads_total"):
        assert needle in exprs, needle
    reasons_panel = next(p for p in all_panels(d) if p["title"] == "Handshake failures by reason")
    from tlsfront.tlserrors import REASONS
    for reason in REASONS:  # every reason tlsfront can report has its remedy in the panel's description
        assert f"**{reason}**:" in reasons_panel["description"], reason


def test_tlslog_dashboard_gives_each_category_its_remedy() -> None:
    from tlslog.catalog import CATALOG, CATEGORIES
    d = load("tlslog.json")
    tiles = {p["title"]: p for p in all_panels(d) if p["type"] == "stat" and p["title"] in CATALOG}
    assert set(tiles) == set(CATEGORIES), "one tile per catalog category"
    for name, p in tiles.items():
        assert CATALOG[name].remedy in p["description"]
        assert f'category="{name}"' in p["targets"][0]["expr"]
    top = next(p for p in all_panels(d) if p["title"] == "Top categories in the time range")
    for name in CATEGORIES:
        assert CATALOG[name].remedy in top["description"], name
    exprs = " ".join(q.expr for q in queries("tlslog.json"))
    for needle in ('job=""', "tlslog_unparsed_lines_total", "tlslog_last_event_timestamp_seconds",
                   "tlslog_files_followed", "tlslog_read_errors_total"):
        assert needle in exprs, needle


def test_provisioning_points_at_the_dashboards_and_the_datasource() -> None:
    prov = GRAFANA / "provisioning"
    (ds_file,) = (prov / "datasources").glob("*.yml")
    (db_file,) = (prov / "dashboards").glob("*.yml")
    ds = yaml.safe_load(ds_file.read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] and source["url"].startswith("http://")
    for name in FILES:
        current = next(v for v in load(name)["templating"]["list"] if v["name"] == "datasource")["current"]
        assert current["value"] == source["uid"], f"{name}: default datasource is not the provisioned one"
    db = yaml.safe_load(db_file.read_text())
    (provider,) = db["providers"]
    assert provider["type"] == "file" and provider["folder"]
    # Grafana expands ${GF_PATHS_PROVISIONING}; pointed at grafana/provisioning, the path is grafana/dashboards.
    path = Path(os.path.expandvars(provider["options"]["path"].replace(
        "${GF_PATHS_PROVISIONING}", str(prov)))).resolve()
    assert path == DASHBOARDS.resolve()
    assert {p.name for p in path.glob("*.json")} == set(FILES)


def test_readme_names_the_targeted_grafana_versions() -> None:
    text = (GRAFANA / "README.md").read_text()
    assert "schemaVersion 39" in text and "Grafana 10" in text and "11" in text
    assert "GF_PATHS_PROVISIONING" in text
