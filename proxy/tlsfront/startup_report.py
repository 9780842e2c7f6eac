"""What the error log says about a configuration when it starts serving (start-up and SIGHUP reload).

mod_ssl writes these at start-up too ("Init: Seeding PRNG with N bytes of entropy",
the key-permission and expiry warnings of its configuration check); tlsfront's lines:

- TLSF0014 `prng_seeded`: the result of `tlsctx.seed_random` for ``random_seed``
  "startup" entries (issue 5: "at start-up the proxy checks that the random
  generator is seeded and logs the result"; a failure is a configuration error
  and stops the start, so only success is logged here);
- TLSF0102 `key_permissions`: a private key file readable (or writable, or
  executable) by group or others (the FAQ: ``chmod 400 server.key``);
- TLSF0103 `cert_expiring`: a certificate that expires within
  `EXPIRY_WARNING_DAYS` days or has expired (negative days);
- TLSF0106 `config_warning`: every other non-fatal problem the configuration
  loader (`Config.warnings`) and the Context builder found, one line each.

`startup_lines` is pure apart from reading the files (stat, the certificates);
the caller writes the lines: ``for key, fields in startup_lines(...): logs.error(key, **fields)``.

Example (with a loaded `Config`)::

    lines = startup_lines(config, tls_warnings, "PRNG seeded (startup: builtin; ...)")
    lines[0] == ('prng_seeded', {'result': 'PRNG seeded (startup: builtin; ...)'})
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterable
from pathlib import Path

from .metrics import certificate_facts, days_left, not_after_text
from .model import Config

# The same horizon as conf/alerts.yml's TLSCertificateExpiringSoon (14 days: time to
# renew through a CA's process); ACME clients renew at 30 days, so a certificate this
# close to its end at start-up means renewal is not happening.
EXPIRY_WARNING_DAYS = 14.0

# Warnings of the loader/Context builder that one of the lines above already says,
# for the same file: (phrase in the warning, which line covers it).
_COVERED_BY = (("is accessible by group or others", "key_permissions"), (" expired on ", "cert_expiring"))

Line = tuple[str, dict[str, str]]


def startup_lines(config: Config, tls_warnings: Iterable[str] = (), seeded: str | None = None,
                  now: float | None = None) -> list[Line]:
    """The (message key, fields) of every start-up line for `config`, in the order to write them."""
    now = time.time() if now is None else now
    lines: list[Line] = []
    if seeded:
        lines.append(("prng_seeded", {"result": seeded}))
    covered: dict[str, set[str]] = {"key_permissions": set(), "cert_expiring": set()}
    seen_keys: set[Path] = set()
    seen_certs: set[tuple[str, Path]] = set()
    for vhost in config.vhosts:
        if vhost.tls is None:
            continue
        for pair in vhost.tls.certs:
            key_file = Path(pair.key_file)
            if key_file not in seen_keys:
                seen_keys.add(key_file)
                mode = _mode(key_file)
                if mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
                    lines.append(("key_permissions", {"path": str(key_file), "mode": f"{mode:04o}"}))
                    covered["key_permissions"].add(str(key_file))
            if (vhost.label, Path(pair.cert_file)) in seen_certs:
                continue
            seen_certs.add((vhost.label, Path(pair.cert_file)))
            facts = certificate_facts(vhost.label, pair.cert_file)
            if facts is None:
                continue
            days = days_left(facts, now)
            if days <= EXPIRY_WARNING_DAYS:
                lines.append(("cert_expiring", {
                    "path": facts.path, "vhost": vhost.label, "subject_cn": facts.subject_cn or "-",
                    "serial": facts.serial, "not_after": not_after_text(facts), "days": f"{days:.1f}"}))
                covered["cert_expiring"].add(facts.path)
    for warning in dict.fromkeys([*config.warnings, *tls_warnings]):
        if any(phrase in warning and any(path in warning for path in covered[key])
               for phrase, key in _COVERED_BY):
            continue
        lines.append(("config_warning", {"warning": " ".join(warning.replace("\n    fix: ", "; fix: ").split())}))
    return lines


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
