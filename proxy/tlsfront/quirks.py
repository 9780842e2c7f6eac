"""Per-request quirks, as mod_ssl's `SetEnvIf`/`BrowserMatch` set them.

The classic rule of Apache's default SSL configuration::

    BrowserMatch "MSIE [2-5]" nokeepalive ssl-unclean-shutdown downgrade-1.0 force-response-1.0

is in tlsfront::

    [[quirk]]
    attribute = "User-Agent"
    pattern = "MSIE [2-5]"
    set = ["nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0"]

Rules apply in the order given; each matching rule sets then unsets its names
(a negated rule applies when the pattern does *not* match). The result is a
`Quirks` value; with no rules every request gets `NONE` without any regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import shutdown

NAMES = ("nokeepalive", "downgrade-1.0", "force-response-1.0", "ssl-unclean-shutdown",
         "ssl-accurate-shutdown")


@dataclass(frozen=True)
class Quirks:
    names: tuple[str, ...] = ()  # in NAMES order, for the access log

    @property
    def keepalive(self) -> bool:
        return "nokeepalive" not in self.names

    @property
    def downgrade_1_0(self) -> bool:
        return "downgrade-1.0" in self.names

    @property
    def force_response_1_0(self) -> bool:
        return "force-response-1.0" in self.names

    @property
    def shutdown(self) -> str:
        if "ssl-unclean-shutdown" in self.names:
            return shutdown.UNCLEAN
        if "ssl-accurate-shutdown" in self.names:
            return shutdown.ACCURATE
        return shutdown.STANDARD


NONE = Quirks()


class _Rule:
    __slots__ = ("attribute", "regex", "negate", "set", "unset")

    def __init__(self, rule) -> None:
        self.attribute = rule.attribute.lower()
        self.regex = re.compile(rule.pattern, re.IGNORECASE if rule.ignore_case else 0)
        self.negate = rule.negate
        self.set = tuple(rule.set)
        self.unset = tuple(rule.unset)


class QuirkRules:
    """Compiled `[[quirk]]` rules (model.Quirk); `for_request` is the hot path."""

    def __init__(self, rules=()) -> None:
        self._rules = [_Rule(r) for r in rules]
        self._cache: dict[frozenset[str], Quirks] = {frozenset(): NONE}

    def __bool__(self) -> bool:
        return bool(self._rules)

    def for_request(self, headers: list[tuple[bytes, bytes]], remote_addr: str, path: bytes) -> Quirks:
        if not self._rules:
            return NONE
        active: set[str] = set()
        lowered: dict[str, str] | None = None
        for rule in self._rules:
            if rule.attribute == "remote_addr":
                value = remote_addr
            elif rule.attribute == "request_uri":
                value = path.split(b"?", 1)[0].decode("latin-1")
            else:
                if lowered is None:
                    lowered = {}
                    for n, v in headers:
                        lowered.setdefault(n.decode("latin-1").lower(), v.decode("latin-1"))
                value = lowered.get(rule.attribute)
            # mod_setenvif matches a missing field as "" (so "^$" catches it).
            matched = rule.regex.search(value if value is not None else "") is not None
            if matched != rule.negate:
                active.update(rule.set)
                active.difference_update(rule.unset)
        key = frozenset(active)
        quirks = self._cache.get(key)
        if quirks is None:
            quirks = self._cache[key] = Quirks(tuple(n for n in NAMES if n in active))
        return quirks
