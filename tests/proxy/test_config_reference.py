"""conf/tlsfront.toml, the reference: it loads, builds Contexts, passes `check`, and documents every key."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from helpers import reference_state
from tlsfront import certgen, config, model, tlsctx

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "conf" / "tlsfront.toml"
DEMO = ROOT / "conf" / "demo.toml"
TLSFRONT = str(Path(sys.executable).with_name("tlsfront"))


@pytest.fixture
def reference_copy(tmp_path, pki):
    """conf/tlsfront.toml in tmp/conf/, with the files it names made in tmp/.state/example/."""
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "tlsfront.toml"
    shutil.copy(REFERENCE, cfg)
    reference_state(tmp_path, pki)
    return cfg


def test_reference_loads_and_builds_contexts(reference_copy):
    cfg = config.load(reference_copy)
    assert cfg.warnings == ()
    assert [v.is_tls for v in cfg.vhosts] == [True, True, False, False]
    assert len(cfg.vhosts[0].tls.certs) == 2
    assert cfg.vhosts[1].tls.client.verify == "optional"
    contexts = tlsctx.build_contexts(cfg)
    assert sorted(contexts) == [0, 1]


def test_reference_passes_check(reference_copy):
    done = subprocess.run([TLSFRONT, "check", "-c", str(reference_copy)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "Syntax OK" in done.stdout and done.stderr == ""


def _keys_in(text: str) -> set[str]:
    """Keys written or shown commented out (`# key = ...`) in a TOML file."""
    return set(re.findall(r"^#?\s*([a-z_0-9]+)\s*=", text, flags=re.M))


def test_reference_documents_every_key():
    text = REFERENCE.read_text()
    keys = _keys_in(text)
    expected = set(config.TLS_KEYS) | {f.name for f in fields(model.ServerSettings)}
    expected |= {f.name for f in fields(model.Timeouts)} | {f.name for f in fields(model.Limits)}
    expected |= {f.name for f in fields(model.Forwarding)} | set(config._VHOST_KEYS) - {"forwarding"}
    expected |= {"attribute", "pattern", "ignore_case", "negate", "set", "unset", "listen"}
    missing = expected - keys
    assert not missing, f"conf/tlsfront.toml does not document {sorted(missing)}"


def test_demo_config_loads(tmp_path):
    (tmp_path / "conf").mkdir()
    shutil.copy(DEMO, tmp_path / "conf" / "demo.toml")
    certgen.ensure_demo_certificate(tmp_path / ".state" / "demo")
    cfg = config.load(tmp_path / "conf" / "demo.toml")
    assert [(str(v.listen), v.is_tls) for v in cfg.vhosts] == [("127.0.0.1:8443", True), ("127.0.0.1:8080", False)]
    assert str(cfg.admin.listen) == "127.0.0.1:9180"
    assert cfg.server.workers == 0
    assert cfg.quirks[0].set == ("nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0")
    assert sorted(tlsctx.build_contexts(cfg)) == [0]
