"""Certificates and private keys from files: decryption with mod_ssl's pass-phrase dialogs,
and the key/certificate match the FAQ checks by comparing moduli.

Pass-phrase dialogs (`passphrase_dialog`, mod_ssl's `SSLPassPhraseDialog`)::

    builtin            ask on the terminal at start-up; a pass phrase that worked is tried
                       on the next encrypted key before asking again (mod_ssl does the same)
    exec:/path/prog    run `prog servername:port keytype` (keytype RSA, EC, DSA...) and read the
                       pass phrase from its standard output (first line)
    file:/path         the first line of a file (unattended starts; keep it mode 0400)
    env:NAME           the value of an environment variable (unattended starts)

Keys are decrypted once, in the master, before workers start (tlsctx.build_contexts).
Every failure becomes a `KeyProblem` naming the key file and the dialog, with a fix.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey \
    | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey

EXEC_TIMEOUT_SECONDS = 30.0
BUILTIN_ATTEMPTS = 3


class KeyProblem(Exception):
    """A certificate or key that cannot be used; `message` names the file(s), `fix` the remedy."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


# --------------------------------------------------------------------------- certificates


def _read(path: Path, what: str) -> bytes:
    from .errors import explain_os_error

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        message, fix = explain_os_error(path, exc, purpose=f"read the {what}")
        raise KeyProblem(message, fix) from None


def load_certificates(path: Path, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in a PEM file (leaf first, as written), or the one in a DER file."""
    data = _read(path, what)
    if b"-----BEGIN" in data:
        if b"PRIVATE KEY-----" in data and b"CERTIFICATE-----" not in data:
            raise KeyProblem(f"{path} holds a private key, not a {what}",
                             "swap the certificate and key paths, or name the .crt file")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise KeyProblem(f"{path} is not a readable PEM {what}: {exc}",
                             f"check it with `openssl x509 -noout -text -in {path}`") from None
        return certs
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise KeyProblem(f"{path} is neither a PEM nor a DER {what}",
                         f"check it with `openssl x509 -noout -text -in {path}`") from None


def key_type_name(key: object) -> str:
    """mod_ssl's name for a key algorithm, as passed to an exec: dialog: RSA, EC, DSA, ED25519..."""
    table = (
        ((rsa.RSAPrivateKey, rsa.RSAPublicKey), "RSA"),
        ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "EC"),
        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "DSA"),
        ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), "ED25519"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "ED448"),
    )
    for classes, name in table:
        if isinstance(key, classes):
            return name
    return type(key).__name__


def key_description(key: object) -> str:
    """'RSA 2048 bits', 'EC P-256 (secp256r1)', ..."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey, dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return f"{key_type_name(key)} {key.key_size} bits"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        nist = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name)
        return f"EC {nist} ({key.curve.name})" if nist else f"EC {key.curve.name}"
    return key_type_name(key)


def spki_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public_key: object) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, colon-separated hex (the same for cert, key, CSR).

    Compare: `openssl x509 -noout -pubkey -in C | openssl pkey -pubin -outform DER | openssl sha256`.
    """
    digest = hashlib.sha256(spki_der(public_key)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def modulus_md5(public_key: object) -> str | None:
    """The FAQ's check for RSA: `openssl x509 -noout -modulus -in C | openssl md5` (hex digest)."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        return None
    line = "Modulus=%X\n" % public_key.public_numbers().n
    return hashlib.md5(line.encode(), usedforsecurity=False).hexdigest()


def check_match(cert: x509.Certificate, cert_file: Path, key: PrivateKey, key_file: Path) -> None:
    """Raise KeyProblem naming both files and both fingerprints when the key is not the cert's."""
    cert_pub, key_pub = cert.public_key(), key.public_key()
    if spki_der(cert_pub) == spki_der(key_pub):
        return
    raise KeyProblem(
        f"the private key {key_file} does not match the certificate {cert_file}: "
        f"certificate public key {key_description(cert_pub)} SHA-256 {fingerprint(cert_pub)}, "
        f"private key's public key {key_description(key_pub)} SHA-256 {fingerprint(key_pub)}",
        f"use the key the certificate was issued for; `tlsfront cert match {cert_file} {key_file}` "
        "compares them (the FAQ's modulus comparison)",
    )


# --------------------------------------------------------------------------- pass-phrase dialogs


@dataclass(frozen=True)
class PassphraseRequest:
    """What a dialog is asked: which key, for which vhost, which attempt (1-based)."""

    key_file: Path
    server: str  # "servername:port", as mod_ssl passes it to an exec: program
    key_type: str  # RSA | EC | DSA | ED25519 (from the certificate)
    dialog: str  # the configured passphrase_dialog, e.g. "builtin" or "exec:/path"
    attempt: int = 1


# A dialog returns the pass phrase, or None when it has nothing (more) to offer.
Dialog = Callable[[PassphraseRequest], bytes | None]


_INTRO_SHOWN = False  # mod_ssl explains the dialog once per start-up


def _builtin(req: PassphraseRequest) -> bytes | None:
    """mod_ssl's builtin dialog, on the controlling terminal."""
    if not (sys.stdin.isatty() or _has_tty()):
        raise KeyProblem(
            f"the private key {req.key_file} is encrypted and passphrase_dialog = \"builtin\" needs a "
            "terminal to ask for its pass phrase, but tlsfront has none (started by systemd, cron or "
            "with its input redirected?)",
            "start tlsfront from a terminal, or set passphrase_dialog to exec:/path/to/program, "
            "file:/path or env:NAME, or remove the pass phrase (tlsfront cert passphrase --remove KEY)",
        )
    global _INTRO_SHOWN
    if not _INTRO_SHOWN:
        _INTRO_SHOWN = True
        sys.stderr.write("Some of your private key files are encrypted for security reasons.\n"
                         "In order to read them you have to provide the pass phrases.\n\n")
    sys.stderr.write(f"Server {req.server} ({req.key_type})\n")
    sys.stderr.flush()
    try:
        text = getpass.getpass("Enter pass phrase:")
    except (EOFError, KeyboardInterrupt):
        raise KeyProblem(f"no pass phrase entered for {req.key_file} (input closed)",
                         "enter the pass phrase at the prompt") from None
    return text.encode()


def _has_tty() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _exec(req: PassphraseRequest, program: str) -> bytes | None:
    """`SSLPassPhraseDialog exec:/path`: argv = program servername:port keytype; stdout = pass phrase."""
    if req.attempt > 1:
        return None  # a program is asked once per key, as mod_ssl does
    try:
        done = subprocess.run([program, req.server, req.key_type], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=EXEC_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise KeyProblem(f"pass-phrase program {program} (for {req.key_file}) does not exist",
                         "correct passphrase_dialog = \"exec:/path/to/program\"") from None
    except PermissionError:
        raise KeyProblem(f"pass-phrase program {program} (for {req.key_file}) is not executable",
                         f"chmod +x {program}") from None
    except subprocess.TimeoutExpired:
        raise KeyProblem(f"pass-phrase program {program} (for {req.key_file}) did not answer "
                         f"within {EXEC_TIMEOUT_SECONDS:.0f} seconds",
                         "make it print the pass phrase and exit without waiting for input") from None
    except OSError as exc:
        raise KeyProblem(f"pass-phrase program {program} (for {req.key_file}) could not run: "
                         f"{exc.strerror or exc}", "check the program (shebang line, permissions)") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {err[-1]}" if err else ""
        raise KeyProblem(f"pass-phrase program {program} failed with exit status "
                         f"{done.returncode} for {req.key_file}{detail}",
                         f"run `{program} {req.server} {req.key_type}` by hand to see why")
    lines = done.stdout.splitlines()
    return lines[0] if lines else b""


def _file(req: PassphraseRequest, path: str) -> bytes | None:
    if req.attempt > 1:
        return None
    data = _read(Path(path), "pass-phrase file")
    lines = data.splitlines()
    return lines[0] if lines else b""


def _env(req: PassphraseRequest, name: str) -> bytes | None:
    if req.attempt > 1:
        return None
    value = os.environb.get(name.encode())
    if value is None:
        raise KeyProblem(f"the private key {req.key_file} is encrypted and passphrase_dialog = "
                         f"\"env:{name}\", but the environment variable {name} is not set",
                         f"export {name}=... before starting tlsfront (or use another dialog)")
    return value


def dialog_for(spec: str) -> Dialog:
    """The Dialog for a `passphrase_dialog` value."""
    kind, _, arg = spec.partition(":")
    if kind == "builtin":
        return lambda req: _builtin(req) if req.attempt <= BUILTIN_ATTEMPTS else None
    if kind == "exec":
        return lambda req: _exec(req, arg)
    if kind == "file":
        return lambda req: _file(req, arg)
    if kind == "env":
        return lambda req: _env(req, arg)
    raise ValueError(f"unknown passphrase_dialog {spec!r}")


def _decrypt(data: bytes, password: bytes | None) -> PrivateKey:
    """Raises TypeError when a password is needed/unneeded, ValueError when wrong or not a key."""
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, password)  # type: ignore[return-value]
    return serialization.load_der_private_key(data, password)  # type: ignore[return-value]


@dataclass
class KeyLoader:
    """Loads private keys, asking pass phrases through dialogs and remembering the ones that worked.

    `override`, when given, replaces every configured dialog (tests, embedding programs).
    """

    override: Dialog | None = None
    known: list[bytes] = field(default_factory=list)
    # One outcome per key file: a key used by several vhosts is decrypted (or refused) once.
    _done: dict[Path, PrivateKey | KeyProblem] = field(default_factory=dict)

    def load(self, key_file: Path, *, dialog: str = "builtin", server: str = "", key_type: str = "RSA") -> PrivateKey:
        """The decrypted key; KeyProblem naming the file and the dialog when it cannot be had."""
        cache_key = Path(os.path.abspath(key_file))
        if cache_key not in self._done:
            try:
                self._done[cache_key] = self._load(key_file, dialog, server, key_type)
            except KeyProblem as exc:
                self._done[cache_key] = exc
        outcome = self._done[cache_key]
        if isinstance(outcome, KeyProblem):
            raise KeyProblem(outcome.message, outcome.fix)
        return outcome

    def _load(self, key_file: Path, dialog: str, server: str, key_type: str) -> PrivateKey:
        data = _read(key_file, "private key")
        if b"-----BEGIN" in data and b"PRIVATE KEY-----" not in data:
            if b"CERTIFICATE-----" in data:
                raise KeyProblem(f"{key_file} holds a certificate, not a private key",
                                 "swap the certificate and key paths, or name the .key file")
            raise KeyProblem(f"{key_file} is not a PEM private key", f"check it with `openssl pkey -noout -in {key_file}`")
        try:
            return _decrypt(data, None)
        except TypeError:
            pass  # encrypted: ask below
        except ValueError as exc:
            raise KeyProblem(f"{key_file} is not a readable private key: {exc}",
                             f"check it with `openssl pkey -noout -in {key_file}`") from None
        except Exception as exc:  # noqa: BLE001 - cryptography raises UnsupportedAlgorithm etc.
            raise KeyProblem(f"{key_file} cannot be loaded: {exc}",
                             f"check it with `openssl pkey -noout -in {key_file}`") from None
        # mod_ssl tries the pass phrases that already worked before asking again.
        for phrase in self.known:
            try:
                return _decrypt(data, phrase)
            except (TypeError, ValueError):
                continue
        ask = self.override or dialog_for(dialog)
        attempt = 0
        while True:
            attempt += 1
            req = PassphraseRequest(Path(key_file), server, key_type, dialog, attempt)
            phrase = ask(req)
            if phrase is None:
                raise KeyProblem(
                    f"wrong pass phrase for the private key {key_file} (passphrase_dialog = "
                    f"\"{dialog}\"{', after %d attempts' % (attempt - 1) if attempt > 2 else ''})",
                    "give the right pass phrase; test it with "
                    f"`openssl pkey -noout -in {key_file}`",
                )
            try:
                key = _decrypt(data, phrase)
            except (TypeError, ValueError):
                if dialog == "builtin" and self.override is None:
                    sys.stderr.write("Pass phrase incorrect.\n")
                continue
            self.known.append(phrase)
            return key
