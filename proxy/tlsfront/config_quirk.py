"""One `[[quirk]]` rule -> `model.Quirk` (Apache's SetEnvIf / BrowserMatch).

Keys: attribute (a request header, e.g. "User-Agent"), pattern (a Python regular
expression), ignore_case, negate, set and unset (names from quirks.NAMES). Example::

    [[quirk]]
    attribute = "User-Agent"
    pattern = ".*MSIE [2-5].*"
    set = ["nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0"]
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from . import model
from .config_table import _Ctx, _Table


def _read_quirk(ctx: _Ctx, data: Any, index: int) -> model.Quirk | None:
    key = f"quirk[{index}]"
    t = _Table(ctx, data, key)
    attribute = t.get("attribute", str)
    pattern = t.get("pattern", str)
    ignore_case = t.get("ignore_case", bool, False)
    negate = t.get("negate", bool, False)
    sets = t.str_list("set")
    unsets = t.str_list("unset")
    t.finish()
    ok = True
    for name, value in (("attribute", attribute), ("pattern", pattern)):
        if value is None and not t.has(name):
            ctx.error(f"{key}.{name}", "missing", 'e.g. attribute = "User-Agent", pattern = ".*MSIE.*"')
            ok = False
    if pattern is not None:
        try:
            re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            ctx.error(f"{key}.pattern", f"{pattern!r} is not a regular expression: {exc}",
                      "fix the expression (Python re syntax, close to PCRE)")
            ok = False
    from .quirks import NAMES as QUIRK_NAMES

    for name, values in (("set", sets), ("unset", unsets)):
        for i, value in enumerate(values):
            if value not in QUIRK_NAMES:
                close = difflib.get_close_matches(value, QUIRK_NAMES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                ctx.error(f"{key}.{name}[{i}]", f"unknown quirk {value!r}{hint}",
                          f"use {', '.join(QUIRK_NAMES)}")
                ok = False
    if not sets and not unsets:
        ctx.error(f"{key}.set", "the rule sets nothing",
                  'e.g. set = ["nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0"]')
        ok = False
    if not ok or attribute is None or pattern is None:
        return None
    return model.Quirk(attribute=attribute, pattern=pattern, ignore_case=ignore_case,
                       negate=negate, set=sets, unset=unsets)
