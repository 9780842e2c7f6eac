"""mod_ssl's `SSLProtocol` syntax, turned into the version range OpenSSL negotiates.

Grammar (as mod_ssl 2.4 reads it, `ssl_engine_config.c: ssl_cmd_protocol_parse`)::

    protocols = token *( SP token )
    token     = [ "+" / "-" ] name
    name      = "all" / "SSLv3" / "TLSv1" / "TLSv1.1" / "TLSv1.2" / "TLSv1.3"

A bare name *replaces* the set built so far, `+name` adds, `-name` removes;
`all` is every protocol this OpenSSL can speak (SSLv3 is not among them: it
was removed from OpenSSL, so `-SSLv3` is accepted and does nothing, while
asking for SSLv3 is an error).

Examples::

    >>> parse("all -SSLv3 -TLSv1 -TLSv1.1").versions
    ('TLSv1.2', 'TLSv1.3')
    >>> parse("+TLSv1.2 +TLSv1.3").minimum
    'TLSv1.2'

OpenSSL negotiates a *range* (min..max) since 1.1.0; a set with a hole in it
(`TLSv1 TLSv1.2`) is refused rather than silently widened.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every name mod_ssl knows, oldest first. Index = order in the range.
ORDER: tuple[str, ...] = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# What OpenSSL 3+/4 (the one bundled with cryptography) can still negotiate.
AVAILABLE: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# Need `insecure_legacy_protocols = true` (and security level 0, which it sets).
LEGACY: frozenset[str] = frozenset({"TLSv1", "TLSv1.1"})
_ALIASES = {n.lower(): n for n in ORDER} | {"tlsv1.0": "TLSv1", "all": "all"}


class ProtocolError(ValueError):
    """A `protocols` string that cannot be used; `.fix` says what to write instead."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class ProtocolRange:
    versions: tuple[str, ...]  # oldest first, contiguous

    @property
    def minimum(self) -> str:
        return self.versions[0]

    @property
    def maximum(self) -> str:
        return self.versions[-1]

    @property
    def legacy(self) -> bool:
        return any(v in LEGACY for v in self.versions)


def openssl_version_constant(name: str) -> int:
    """The `OpenSSL.SSL.*_VERSION` constant for a protocol name (imported lazily)."""
    from OpenSSL import SSL

    return {
        "SSLv3": SSL.SSL3_VERSION,
        "TLSv1": SSL.TLS1_VERSION,
        "TLSv1.1": SSL.TLS1_1_VERSION,
        "TLSv1.2": SSL.TLS1_2_VERSION,
        "TLSv1.3": SSL.TLS1_3_VERSION,
    }[name]


def parse(text: str, *, openssl_name: str = "the OpenSSL in use") -> ProtocolRange:
    """Parse `SSLProtocol` syntax; raise ProtocolError with the whole string shown."""
    chosen: set[str] = set()
    tokens = text.split()
    if not tokens:
        raise ProtocolError(f"protocols {text!r} is empty", 'write e.g. "+TLSv1.2 +TLSv1.3"')
    for token in tokens:
        op, name = (token[0], token[1:]) if token[:1] in "+-" else ("", token)
        canonical = _ALIASES.get(name.lower())
        if canonical is None:
            raise ProtocolError(
                f"protocols {text!r}: unknown protocol {token!r}",
                "use all, SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3, each optionally prefixed by + or -",
            )
        names = set(AVAILABLE) if canonical == "all" else {canonical}
        if canonical == "SSLv3" and op != "-":
            raise ProtocolError(
                f"protocols {text!r}: SSLv3 was asked for, but {openssl_name} cannot offer it "
                "(SSLv3 was removed from OpenSSL; it is broken by POODLE, RFC 7568)",
                'remove SSLv3 from `protocols`, e.g. "all -SSLv3" or "+TLSv1.2 +TLSv1.3"',
            )
        if op == "":
            chosen = set(names)
        elif op == "+":
            chosen |= names
        else:
            chosen -= names
    if not chosen:
        raise ProtocolError(f"protocols {text!r} leaves no protocol enabled",
                            'enable at least one, e.g. "+TLSv1.2 +TLSv1.3"')
    ordered = tuple(v for v in ORDER if v in chosen)
    first, last = ORDER.index(ordered[0]), ORDER.index(ordered[-1])
    if len(ordered) != last - first + 1:
        missing = [v for v in ORDER[first:last + 1] if v not in chosen]
        raise ProtocolError(
            f"protocols {text!r} has a hole ({', '.join(missing)} disabled between "
            f"{ordered[0]} and {ordered[-1]}); OpenSSL negotiates a range of versions",
            f'enable {", ".join(missing)} too, or raise the minimum',
        )
    return ProtocolRange(ordered)
