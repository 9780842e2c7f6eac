"""`tlsfront cert`: every subcommand compared with the `openssl` command's own output on the same files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tlsfront import cli

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="LOUD SKIP: the openssl command is not installed")
TLSFRONT = str(Path(sys.executable).with_name("tlsfront"))


def ossl(*args: str, input: bytes | None = None, check: bool = True) -> str:
    done = subprocess.run([OPENSSL, *args], input=input, capture_output=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {done.stderr.decode()}")
    return done.stdout.decode()


def cert(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `tlsfront cert ARGV` in-process; (status, stdout, stderr)."""
    status = cli.main(["cert", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "kind, text",
    [("rsa2048", "Private-Key: (2048 bit"), ("rsa3072", "Private-Key: (3072 bit"),
     ("ec256", "ASN1 OID: prime256v1"), ("ec384", "ASN1 OID: secp384r1")],
)
def test_genkey_types(tmp_path, capsys, kind, text):
    key = tmp_path / "k.pem"
    status, out, _ = cert(capsys, "genkey", "--type", kind, "-o", str(key))
    assert status == 0
    assert text in ossl("pkey", "-in", str(key), "-noout", "-text")
    assert key.stat().st_mode & 0o777 == 0o600


def test_genkey_encrypted_needs_the_pass_phrase_in_openssl(tmp_path, capsys):
    key = tmp_path / "k.pem"
    assert cert(capsys, "genkey", "--encrypt", "--passout", "pass:s3cret", "-o", str(key))[0] == 0
    assert "ENCRYPTED PRIVATE KEY" in key.read_text()
    done = subprocess.run([OPENSSL, "pkey", "-in", str(key), "-noout", "-passin", "pass:wrong"], capture_output=True)
    assert done.returncode != 0
    ossl("pkey", "-in", str(key), "-noout", "-passin", "pass:s3cret")
    # and refuses to overwrite
    status, _, err = cert(capsys, "genkey", "-o", str(key))
    assert status == 1 and "exists: not overwritten" in err and "--force" in err


def test_genkey_prompts_twice_on_a_terminal(tmp_path):
    key = tmp_path / "k.pem"
    child = pexpect.spawn(TLSFRONT, ["cert", "genkey", "--encrypt", "-o", str(key)], timeout=20)
    child.expect("Enter PEM pass phrase:")
    child.sendline("abcd1234")
    child.expect("Verifying - Enter PEM pass phrase:")
    child.sendline("abcd1234")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    ossl("pkey", "-in", str(key), "-noout", "-passin", "pass:abcd1234")


@pytest.fixture
def rsa_key(tmp_path, capsys):
    key = tmp_path / "server.key"
    assert cert(capsys, "genkey", "--type", "rsa2048", "-o", str(key))[0] == 0
    return key


def test_csr_subject_and_sans_as_openssl_reads_them(tmp_path, capsys, rsa_key):
    csr = tmp_path / "server.csr"
    status, _, _ = cert(capsys, "csr", "--key", str(rsa_key), "--subject", "/C=DE/O=Example GmbH/CN=www.example.test",
                        "--san", "DNS:www.example.test", "--san", "IP:192.0.2.7", "-o", str(csr))
    assert status == 0
    assert ossl("req", "-in", str(csr), "-noout", "-subject").strip() == \
        "subject=C = DE, O = Example GmbH, CN = www.example.test"
    text = ossl("req", "-in", str(csr), "-noout", "-text")
    assert "DNS:www.example.test, IP Address:192.0.2.7" in text
    done = subprocess.run([OPENSSL, "req", "-in", str(csr), "-noout", "-verify"], capture_output=True, text=True)
    assert "verify OK" in done.stdout + done.stderr
    # our `show` prints the same subject line as openssl
    status, out, _ = cert(capsys, "show", str(csr))
    assert "subject=C = DE, O = Example GmbH, CN = www.example.test" in out and "signature: OK" in out


def test_csr_asks_on_the_terminal_when_no_subject(tmp_path, rsa_key):
    csr = tmp_path / "asked.csr"
    child = pexpect.spawn(TLSFRONT, ["cert", "csr", "--key", str(rsa_key), "-o", str(csr)], timeout=20)
    child.expect("Common Name")
    child.sendline("www.foo.dom")
    child.expect("Other names")
    child.sendline("DNS:foo.dom, IP:127.0.0.1")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    text = ossl("req", "-in", str(csr), "-noout", "-text")
    assert "CN = www.foo.dom" in text and "DNS:foo.dom, IP Address:127.0.0.1" in text


def test_csr_without_subject_and_terminal_is_an_error(tmp_path, rsa_key):
    done = subprocess.run([TLSFRONT, "cert", "csr", "--key", str(rsa_key), "-o", str(tmp_path / "x.csr")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "give --cn" in done.stderr and "Traceback" not in done.stderr


def test_selfsign_from_csr_and_show_matches_openssl(tmp_path, capsys, rsa_key):
    csr, crt = tmp_path / "server.csr", tmp_path / "server.crt"
    cert(capsys, "csr", "--key", str(rsa_key), "--cn", "www.example.test", "-o", str(csr))
    status, _, _ = cert(capsys, "selfsign", "--key", str(rsa_key), "--csr", str(csr), "--days", "30", "-o", str(crt))
    assert status == 0
    ossl("verify", "-CAfile", str(crt), str(crt))  # self-signed: verifies against itself
    expected = ossl("x509", "-in", str(crt), "-noout", "-subject", "-issuer", "-serial", "-startdate", "-enddate",
                    "-fingerprint", "-sha256").splitlines()
    status, out, _ = cert(capsys, "show", str(crt))
    lines = out.splitlines()
    for line in expected:
        assert line in lines, (line, out)
    san = ossl("x509", "-in", str(crt), "-noout", "-ext", "subjectAltName").splitlines()[1].strip()
    assert san == "DNS:www.example.test"  # the CN copied to the SAN
    assert f"X509v3 Subject Alternative Name: {san}" in lines


def test_selfsign_refuses_a_csr_of_another_key(tmp_path, capsys, rsa_key):
    other, csr = tmp_path / "other.key", tmp_path / "o.csr"
    cert(capsys, "genkey", "-o", str(other))
    cert(capsys, "csr", "--key", str(other), "--cn", "x.test", "-o", str(csr))
    status, _, err = cert(capsys, "selfsign", "--key", str(rsa_key), "--csr", str(csr), "-o", str(tmp_path / "c"))
    assert status == 1 and "was not made with the key" in err


def test_passphrase_remove_in_place_keeps_the_original(tmp_path, capsys):
    key = tmp_path / "server.key"
    cert(capsys, "genkey", "--type", "rsa2048", "--encrypt", "--passout", "pass:oldpass", "-o", str(key))
    status, out, _ = cert(capsys, "passphrase", "--remove", str(key), "--passin", "pass:oldpass")
    assert status == 0 and "mode 0400" in out
    ossl("pkey", "-in", str(key), "-noout")  # no pass phrase needed any more
    assert "ENCRYPTED" in (tmp_path / "server.key.org").read_text()
    # same key as openssl's own removal of the original
    ours = ossl("pkey", "-in", str(key), "-pubout")
    theirs = ossl("pkey", "-in", str(tmp_path / "server.key.org"), "-passin", "pass:oldpass", "-pubout")
    assert ours == theirs


def test_passphrase_change(tmp_path, capsys):
    key, new = tmp_path / "k.pem", tmp_path / "k2.pem"
    cert(capsys, "genkey", "--encrypt", "--passout", "pass:oldpass", "-o", str(key))
    status, _, _ = cert(capsys, "passphrase", "--change", str(key), "--passin", "pass:oldpass",
                        "--passout", "pass:newpass", "-o", str(new))
    assert status == 0
    ossl("pkey", "-in", str(new), "-noout", "-passin", "pass:newpass")
    assert subprocess.run([OPENSSL, "pkey", "-in", str(new), "-noout", "-passin", "pass:oldpass"],
                          capture_output=True).returncode != 0
    status, _, err = cert(capsys, "passphrase", "--change", str(key), "--passin", "pass:wrong",
                          "--passout", "pass:x1234", "-o", str(tmp_path / "k3.pem"))
    assert status == 1 and "wrong pass phrase" in err


def test_match_uses_the_faqs_modulus_md5(tmp_path, capsys, rsa_key, pki):
    csr, crt = tmp_path / "s.csr", tmp_path / "s.crt"
    cert(capsys, "csr", "--key", str(rsa_key), "--cn", "a.test", "-o", str(csr))
    cert(capsys, "selfsign", "--key", str(rsa_key), "--cn", "a.test", "-o", str(crt))
    status, out, _ = cert(capsys, "match", str(crt), str(rsa_key), str(csr))
    assert status == 0 and "MATCH" in out
    for args in (["x509", "-in", str(crt)], ["rsa", "-in", str(rsa_key)], ["req", "-in", str(csr)]):
        modulus = ossl(*args, "-noout", "-modulus")
        md5 = ossl("md5", input=modulus.encode()).split()[-1]
        assert out.count(f"modulus MD5 {md5}") == 3
    status, out, _ = cert(capsys, "match", str(pki.server_cert), str(rsa_key))
    assert status == 1 and "DO NOT MATCH" in out


def test_convert_pem_der_round_trip_equals_openssl(tmp_path, capsys, pki):
    der, back = tmp_path / "c.der", tmp_path / "c.pem"
    assert cert(capsys, "convert", str(pki.server_cert), "-o", str(der))[0] == 0
    theirs = subprocess.run([OPENSSL, "x509", "-in", str(pki.server_cert), "-outform", "DER"],
                            capture_output=True, check=True).stdout
    assert der.read_bytes() == theirs
    assert cert(capsys, "convert", str(der), "-o", str(back))[0] == 0
    assert back.read_text() == ossl("x509", "-in", str(der), "-inform", "DER")
    kder = tmp_path / "k.der"
    assert cert(capsys, "convert", str(pki.server_key), "-o", str(kder))[0] == 0
    assert kder.read_bytes() == subprocess.run([OPENSSL, "pkey", "-in", str(pki.server_key), "-outform", "DER"],
                                               capture_output=True, check=True).stdout
    assert kder.stat().st_mode & 0o777 == 0o600
    rsa_der = tmp_path / "r.der"
    assert cert(capsys, "convert", str(pki.server_rsa_key), "-o", str(rsa_der))[0] == 0
    assert rsa_der.read_bytes() == subprocess.run(
        [OPENSSL, "pkey", "-in", str(pki.server_rsa_key), "-outform", "DER"], capture_output=True, check=True).stdout


def _ca_config(d: Path) -> Path:
    """A minimal `openssl ca` configuration, enough for -gencrl."""
    (d / "index.txt").write_text("")
    conf = d / "ca.cnf"
    conf.write_text(f"[ca]\ndefault_ca = x\n[x]\ndatabase = {d}/index.txt\ndefault_md = sha256\n"
                    "default_crl_days = 1\n")
    return conf


def test_rehash_makes_the_links_openssl_rehash_makes(tmp_path, capsys, pki):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    crl = tmp_path / "client-ca.crl"
    ossl("ca", "-gencrl", "-keyfile", str(pki.dir / "client-ca.key"), "-cert", str(pki.client_ca_cert),
         "-out", str(crl), "-config", str(_ca_config(tmp_path)))
    for d in (ours, theirs):
        d.mkdir()
        for src in (pki.ca_cert, pki.intermediate_cert, pki.client_ca_cert):
            shutil.copy(src, d / (src.stem + ".pem"))
        shutil.copy(pki.client_ca_cert, d / "client-ca-copy.crt")  # a duplicate: skipped by both
        (d / "notes.txt").write_text("not a certificate")
        shutil.copy(crl, d / "client-ca.crl")
    assert cert(capsys, "rehash", str(ours))[0] == 0
    subprocess.run([OPENSSL, "rehash", str(theirs)], capture_output=True, check=True)

    def links(d: Path) -> dict[str, str]:
        return {p.name: os.readlink(p) for p in d.iterdir() if p.is_symlink()}

    assert links(ours) == links(theirs) and len(links(ours)) == 4
    assert any(name.endswith(".r0") for name in links(ours))
    # and OpenSSL finds the CA through the directory, as ca_certificate_path will
    ossl("verify", "-CApath", str(ours), "-untrusted", str(pki.intermediate_cert), str(pki.server_cert))
    # running it again replaces the links instead of adding .1 duplicates
    assert cert(capsys, "rehash", str(ours))[0] == 0
    assert links(ours) == links(theirs)


def test_ciphers_lists_what_openssl_ciphers_lists(capsys):
    spec = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"
    status, out, _ = cert(capsys, "ciphers", "-v", spec)
    assert status == 0
    ours = [(line.split()[0], line.split()[2], line.split()[3]) for line in out.splitlines()]
    theirs = [(line.split()[0], line.split()[2], line.split()[3]) for line in ossl("ciphers", "-V", spec).splitlines()]
    assert ours == theirs and len(ours) >= 9


def test_ciphers_legacy_lists_tls10_ciphers_without_signalling_values(capsys):
    spec = "ECDHE+AES:!AESGCM:!AESCCM"
    status, out, _ = cert(capsys, "ciphers", "-v", "--legacy", spec)
    assert status == 0 and "SCSV" not in out
    ours = [line.split()[0] for line in out.splitlines()]
    theirs = [line.split()[0] for line in ossl("ciphers", "-V", spec + ":@SECLEVEL=0").splitlines()]
    assert ours == theirs and "0xC0,0x13" in ours  # ECDHE-RSA-AES128-SHA, a TLS 1.0 cipher


def test_ciphers_spec_selecting_nothing(capsys):
    status, _, err = cert(capsys, "ciphers", "RC4:!RC4")
    assert status == 1 and "selects no cipher" in err and "'RC4:!RC4'" in err


def test_show_reports_chain_order_problems(tmp_path, capsys, pki):
    good, bad = tmp_path / "good.pem", tmp_path / "bad.pem"
    good.write_bytes(pki.server_cert.read_bytes() + pki.intermediate_cert.read_bytes() + pki.ca_cert.read_bytes())
    bad.write_bytes(pki.server_cert.read_bytes() + pki.ca_cert.read_bytes() + pki.intermediate_cert.read_bytes())
    status, out, _ = cert(capsys, "show", str(good))
    assert status == 0 and "chain order problem" not in out and "ends with a self-signed root" in out
    assert out.count("subject=") == 3
    status, out, _ = cert(capsys, "show", str(bad))
    assert status == 1
    assert "chain order problem: certificate #2 (CN = tlsfront test root CA) did not issue #1" in out
    assert "(it is certificate #3)" in out


def test_show_key_and_expired_certificate(tmp_path, capsys, pki):
    status, out, _ = cert(capsys, "show", str(pki.client_expired_cert))
    assert status == 0 and "status: EXPIRED" in out
    assert ossl("x509", "-in", str(pki.client_expired_cert), "-noout", "-enddate").strip() in out
    key = tmp_path / "k.pem"
    shutil.copy(pki.server_key, key)
    key.chmod(0o644)
    status, out, _ = cert(capsys, "show", str(key))
    assert "EC P-256" in out and "chmod 400" in out
