"""conf/prometheus.yml, conf/alerts.yml and conf/alerts_test.yml with the real promtool (Debian package).

`promtool check config`, `promtool check rules` and `promtool test rules` must pass; and the unit tests must
cover every rule both ways (a case where it fires and one where it does not), every rule must carry the
annotations an operator reads (summary, and a description that gives the remedy) and a severity.
The rules against live data: tests/grafana/test_dashboards_prometheus.py loads them into a Prometheus that scrapes a
running tlsfront and tlslog and checks that each evaluates without error.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="LOUD: promtool is needed (tests/install-sysdeps.sh installs prometheus)")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=CONF)


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load((CONF / "alerts.yml").read_text())["groups"] for r in g["rules"]]


@needs_promtool
def test_promtool_check_config() -> None:
    r = _promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout and "1 rule files found" in r.stdout


@needs_promtool
def test_promtool_check_rules() -> None:
    r = _promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in r.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    r = _promtool("test", "rules", "alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@needs_promtool
def test_promtool_test_rules_fails_when_a_rule_changes(tmp_path) -> None:
    """The unit tests are not vacuous: a threshold moved by a factor of ten makes them fail."""
    text = (CONF / "alerts.yml").read_text()
    assert text.count("< 14 * 86400") == 1
    (tmp_path / "alerts.yml").write_text(text.replace("< 14 * 86400", "< 1.4 * 86400"))
    shutil.copy(CONF / "alerts_test.yml", tmp_path / "alerts_test.yml")
    r = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "TLSCertificateExpiringSoon" in r.stdout + r.stderr


def test_scrape_jobs_and_rule_files() -> None:
    cfg = yaml.safe_load((CONF / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"tlsfront", "tlslog"}
    for job in jobs.values():
        (static,) = job["static_configs"]
        assert all(t.startswith("127.0.0.1:") for t in static["targets"])
    assert jobs["tlsfront"]["static_configs"][0]["targets"] == ["127.0.0.1:9180"]  # docs/metrics.md's example
    assert jobs["tlslog"]["static_configs"][0]["targets"] == ["127.0.0.1:9469"]  # tlslog follow --listen example
    assert cfg["rule_files"] == ["alerts.yml"]


def test_the_issue_s_alerts_exist_with_remedies() -> None:
    rules = {r["alert"]: r for r in _rules()}
    # certificate expiring within 14 days, handshake failure ratio high, a backend down,
    # plain-HTTP-on-TLS-port spike, analyzer not reading; the two "cannot scrape" alerts that guard them; a
    # refused reload (a renewed certificate not in use) and a worker crash loop
    assert {"TLSCertificateExpiringSoon", "TLSHandshakeFailureRatioHigh", "TLSBackendDown",
            "TLSPlainHTTPOnTLSPortSpike", "TLSLogNotReading", "TLSLogDown", "TLSFrontDown",
            "TLSFrontReloadFailed", "TLSFrontWorkersRestarting"} == set(rules)
    assert "14 * 86400" in rules["TLSCertificateExpiringSoon"]["expr"]
    for name, r in rules.items():
        assert r["labels"]["severity"] in ("critical", "warning"), name
        ann = r["annotations"]
        assert ann["summary"] and "Remedy" in ann["description"], name
        assert r.get("for"), f"{name}: no `for:`, a single bad scrape would page"


def test_every_rule_is_unit_tested_firing_and_silent() -> None:
    tests = yaml.safe_load((CONF / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for t in case.get("alert_rule_test", []):
            (fires if t["exp_alerts"] else silent).add(t["alertname"])
            for a in t["exp_alerts"]:
                assert a.get("exp_annotations"), f"{t['alertname']}: annotations are not checked"
    names = {r["alert"] for r in _rules()}
    assert fires == names, f"never tested firing: {names - fires}"
    assert silent == names, f"never tested silent: {names - silent}"
