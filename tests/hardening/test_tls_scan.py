"""An independent TLS scanner against tlsfront with the shipped conf/tlsfront.toml defaults (issue 11).

The scanner is testssl.sh 3.0 from Debian (`testssl`), not sslyze: sslyze 6.3.1 pins
cryptography < 47 while tlsfront runs on cryptography 50 (OpenSSL 4.0.3 inside), so
installing it into the project's environment would downgrade the library every TLS test
relies on (see docs/hardening.md). testssl.sh speaks raw sockets for SSLv2/SSLv3,
Heartbleed, CCS injection and ROBOT, so it needs no old OpenSSL.

The target is a copy of conf/tlsfront.toml, unchanged except its addresses (free ports)
and files (the pki fixture's certificates at the paths it names); its first vhost has the
[tls] defaults with an ECDSA and an RSA certificate. Expected: no SSLv2/SSLv3/TLS 1.0/
TLS 1.1; no NULL, anonymous, export, LOW, 3DES/IDEA or CBC ciphers; no TLS compression
(CRIME); no client-initiated renegotiation; not vulnerable to Heartbleed, CCS injection,
ROBOT; both certificate chains trusted (by the test root CA) and in order.

A control scan (protocols only, to stay quick) of a vhost with `insecure_legacy_protocols`
shows the same assertions would catch a weak configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import wait_ready
from helpers import free_ports, reference_state, start_proxy
from rawclient import Reader

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "conf" / "tlsfront.toml"
TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")

pytestmark = pytest.mark.skipif(
    TESTSSL is None,
    reason="LOUD SKIP: testssl.sh is not installed (tests/install-sysdeps.sh installs the Debian "
           "package testssl.sh): the TLS scan of issue 11 did not run")


def scan(target: str, out: Path, checks: list[str], ca: Path) -> dict[str, dict]:
    """Run testssl on `target` (https://IP:PORT); findings by id (`cert_*` keep their `<cert#n>`)."""
    json_path = out / f"testssl-{target.rsplit(':', 1)[1]}-{len(checks)}.json"
    argv = [TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--openssl-timeout", "5",
            "--nodns", "none", "--ip", target.split("//")[1].split(":")[0], "--add-ca", str(ca),
            "--jsonfile", str(json_path), *checks, target]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, cwd=out)
    assert json_path.exists(), f"testssl wrote no JSON (exit {done.returncode}):\n{done.stdout[-3000:]}"
    return {e["id"]: e for e in json.loads(json_path.read_text())}


def reference_copy(tmp: Path, pki, tls_port: int, plain_port: int, admin_port: int, backend_port: int) -> Path:
    """conf/tlsfront.toml in tmp/conf/ with the files it names in tmp/.state/example/
    and free ports; nothing else changed."""
    (tmp / "conf").mkdir()
    reference_state(tmp, pki)
    text = REFERENCE.read_text()
    for old, new in ((":8443", f":{tls_port}"), (":8080", f":{plain_port}"), (":9180", f":{admin_port}"),
                     (":8081", f":{backend_port}"), (":8082", f":{backend_port}")):
        assert old in text, f"conf/tlsfront.toml no longer has {old}: update this test"
        text = text.replace(old, new)
    if os.geteuid() == 0:
        # The shipped file refuses a root master without `user` (allow_root = false); CI runs
        # as root and the copy's files live in root's private temporary directory.
        assert "allow_root = false" in text, "conf/tlsfront.toml no longer has allow_root = false"
        text = text.replace("allow_root = false", "allow_root = true")
    cfg = tmp / "conf" / "tlsfront.toml"
    cfg.write_text(text)
    return cfg



def test_shipped_defaults_pass_an_independent_scan(pki, recorder, tmp_path):
    tls_port, plain_port, admin_port = free_ports(3, hosts=("127.0.0.1", "127.0.0.2"))
    cfg = reference_copy(tmp_path, pki, tls_port, plain_port, admin_port, recorder.port)
    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", tls_port), ("127.0.0.1", admin_port)], name="scan-front")
    try:
        wait_ready(admin_port, proxy)
        # The shipped file serves as a whole: its plain vhost without backends redirects.
        with socket.create_connection(("127.0.0.1", plain_port), timeout=5) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
            answer = Reader(s).answer()
        assert answer.status == 301
        assert answer.header(b"location") == f"https://www.example.test:{tls_port}/x".encode()
        f = scan(f"https://127.0.0.1:{tls_port}", tmp_path,
                 ["-p", "-s", "-S", "-H", "-I", "-BB", "-R", "-C"], pki.ca_cert)
    finally:
        proxy.stop()
    # protocols
    assert f["SSLv2"]["finding"] == "not offered"
    assert f["SSLv3"]["finding"] == "not offered"
    assert f["TLS1"]["finding"] == "not offered"
    assert f["TLS1_1"]["finding"] == "not offered"
    assert f["TLS1_2"]["finding"] == "offered"
    assert f["TLS1_3"]["finding"].startswith("offered")
    # ciphers: only AEAD with forward secrecy
    for weak in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                 "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"):
        assert f[weak]["finding"] == "not offered", (weak, f[weak])
    assert f["cipherlist_STRONG"]["finding"] == "offered"
    # compression, renegotiation, the named vulnerabilities
    assert f["CRIME_TLS"]["finding"] == "not vulnerable"
    assert f["secure_client_renego"]["finding"] == "not vulnerable"
    assert f["heartbleed"]["finding"].startswith("not vulnerable")
    assert f["CCS"]["finding"] == "not vulnerable"
    assert f["ROBOT"]["finding"].startswith("not vulnerable")
    assert f["secure_renego"]["finding"] == "supported"  # RFC 5746
    # both certificates (ECDSA and RSA): chain complete and trusted, in order, names match
    assert f["cert_numbers"]["finding"] == "2"
    for n in (1, 2):
        assert f[f"cert_chain_of_trust <cert#{n}>"]["finding"] == "passed."
        assert f[f"certs_list_ordering_problem <cert#{n}>"]["finding"] == "no"
        assert f[f"certs_countServer <cert#{n}>"]["finding"] == "2"  # leaf + intermediate
        assert f[f"cert_trust <cert#{n}>"]["finding"].startswith("Ok via SAN")
    key_sizes = {f[f"cert_keySize <cert#{n}>"]["finding"] for n in (1, 2)}
    assert key_sizes == {"RSA 2048 bits", "EC 256 bits"}
    bad = {k: v["finding"] for k, v in f.items()
           if v["severity"] in ("CRITICAL", "HIGH", "MEDIUM")
           # the test certificates live 30 days and name no CRL/OCSP: facts of the fixture
           and not k.startswith(("cert_expirationStatus", "cert_notAfter", "cert_revocation"))}
    assert bad == {}


def test_control_scan_catches_legacy_protocols(pki, recorder, tmp_path):
    """Same assertions, a weak vhost: they fail, so the scan above can fail."""
    port, admin_port = free_ports(2)
    cfg = tmp_path / "weak.toml"
    cfg.write_text(f"""
[server]
allow_root = true
workers = 1
[admin]
listen = "127.0.0.1:{admin_port}"
[tls]
certificate = "{pki.server_cert}"
key = "{pki.server_key}"
chain = "{pki.intermediate_cert}"
protocols = "+TLSv1 +TLSv1.1 +TLSv1.2"
insecure_legacy_protocols = true
ciphers = "DEFAULT:@SECLEVEL=0"
[[vhost]]
listen = "127.0.0.1:{port}"
server_name = "weak.test"
tls = true
backends = ["http://127.0.0.1:{recorder.port}"]
""")
    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", port), ("127.0.0.1", admin_port)], name="weak-front")
    try:
        wait_ready(admin_port, proxy)
        f = scan(f"https://127.0.0.1:{port}", tmp_path, ["-p"], pki.ca_cert)
    finally:
        proxy.stop()
    assert f["TLS1"]["finding"].startswith("offered")  # "offered (deprecated)"
    assert f["TLS1_1"]["finding"].startswith("offered")
