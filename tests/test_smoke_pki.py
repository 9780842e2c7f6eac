import subprocess


def test_pki_chain_verifies_with_openssl(pki):
    """The fixture's leaf verifies against root + intermediate with the openssl command."""
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki.ca_cert), "-untrusted", str(pki.intermediate_cert),
         str(pki.server_cert)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")
