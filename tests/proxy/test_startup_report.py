"""startup_report: the start-up/reload lines (TLSF0014, TLSF0102, TLSF0103, TLSF0106) from real files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from tlsfront import certgen, tlsctx
from tlsfront.logformat import MESSAGES, ErrorLogFormatter
from tlsfront.model import AdminSettings, Address, CertKey, Config, ServerSettings, TLSSettings, VHost
from tlsfront.startup_report import EXPIRY_WARNING_DAYS, startup_lines

NOW = dt.datetime.now(dt.timezone.utc)


def _pair(tmp_path, name: str, days: float, key_mode: int = 0o600) -> CertKey:
    issued = certgen.issue(f"{name}.test", not_before=NOW - dt.timedelta(days=30),
                           not_after=NOW + dt.timedelta(days=days), serial=0xABC)
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    issued.write(cert, key)
    os.chmod(key, key_mode)
    return CertKey(cert, key)


def _config(*vhost_certs: tuple[CertKey, ...], warnings: tuple[str, ...] = ()) -> Config:
    vhosts = tuple(VHost(i, f"v{i}.test", Address("127.0.0.1", 8443 + i), TLSSettings(certs=certs), ())
                   for i, certs in enumerate(vhost_certs))
    return Config(Path("conf.toml"), ServerSettings(), AdminSettings(), TLSSettings(), vhosts, warnings=warnings)


def test_healthy_configuration_logs_only_the_prng_line(tmp_path) -> None:
    config = _config((_pair(tmp_path, "good", 90),))
    seeded = tlsctx.seed_random((), "startup")
    assert tlsctx.last_seed_result() == seeded
    assert startup_lines(config, [], seeded) == [("prng_seeded", {"result": seeded})]
    assert seeded.startswith("PRNG seeded (startup: builtin; 0 bytes added, RAND_status OK)")


def test_key_permissions_expiry_and_warnings(tmp_path) -> None:
    readable = _pair(tmp_path, "readable", 90, key_mode=0o644)
    soon = _pair(tmp_path, "soon", 3.5)
    expired = _pair(tmp_path, "expired", -2)
    key_warning = (f"conf.toml: tls.key (line 7): the private key {readable.key_file} is accessible by group "
                   f"or others (mode -rw-r--r--)\n    fix: chmod 400 {readable.key_file} (readable by its owner only)")
    other = "conf.toml: server.random_seed (line 3): 'startup file:/dev/random 16': reading /dev/random may block"
    expired_warning = f"conf.toml: tls.certificate: the certificate {expired.cert_file} expired on 2026-01-01 00:00 UTC"
    config = _config((readable, soon), (readable, expired), warnings=(key_warning, other))
    lines = startup_lines(config, [expired_warning, other], None, now=NOW.timestamp())
    keys = [k for k, _f in lines]
    # One line per fact: the shared key once, both certificates, the loader's own warning once;
    # the loader's key-mode and expiry warnings are not repeated under TLSF0106.
    assert keys == ["key_permissions", "cert_expiring", "cert_expiring", "config_warning"], lines
    assert lines[0][1] == {"path": str(readable.key_file), "mode": "0644"}
    soon_fields, expired_fields = lines[1][1], lines[2][1]
    assert soon_fields["vhost"] == "v0.test:8443" and soon_fields["path"] == str(soon.cert_file)
    assert soon_fields["subject_cn"] == "soon.test" and soon_fields["serial"] == "abc"
    assert soon_fields["days"] == "3.5"
    assert expired_fields["vhost"] == "v1.test:8444" and expired_fields["days"] == "-2.0"
    assert lines[3][1] == {"warning": other}
    # Every line formats with its template (the fields match), at the documented ID and level.
    fmt = ErrorLogFormatter()
    text = [fmt.format(k, NOW.timestamp(), None, **f) for k, f in lines]
    assert "[ssl:warn]" in text[0] and f"TLSF0102: private key file {readable.key_file} is readable" in text[0]
    assert "TLSF0103: certificate" in text[1] and "(3.5 days left)" in text[1]
    assert "TLSF0106: configuration warning: conf.toml: server.random_seed" in text[3]
    assert MESSAGES["prng_seeded"].id == "TLSF0014" and MESSAGES["config_warning"].id == "TLSF0106"


def test_expiry_horizon_is_the_alerts(tmp_path) -> None:
    """conf/alerts.yml fires 14 days ahead; the start-up warning uses the same horizon."""
    assert EXPIRY_WARNING_DAYS == 14
    inside = _pair(tmp_path, "inside", EXPIRY_WARNING_DAYS - 0.5)
    outside = _pair(tmp_path, "outside", EXPIRY_WARNING_DAYS + 0.5)
    lines = startup_lines(_config((inside, outside)), now=NOW.timestamp())
    assert [f["path"] for k, f in lines if k == "cert_expiring"] == [str(inside.cert_file)]


def test_fix_hint_stays_on_one_line(tmp_path) -> None:
    w = "conf.toml: tls.chain: order problem\n    fix: order the chain"
    lines = startup_lines(_config(), [w])
    assert lines == [("config_warning", {"warning": "conf.toml: tls.chain: order problem; fix: order the chain"})]
