"""Read the committed Grafana dashboards as their queries: what Grafana would send to Prometheus.

Shared by tests/grafana/test_dashboards.py (static checks) and test_dashboards_prometheus.py (every query against
a real Prometheus). Grammar handled: a panel's ``targets[].expr``, annotation ``expr``s, and ``label_values(SELECTOR,
LABEL)`` variable queries; Grafana's variables ``$name`` / ``${name}`` and the built-ins ``$__rate_interval``,
``$__range`` and ``$__interval`` are replaced by :func:`substitute`.

Example::

    >>> metric_names('sum by (vhost) (rate(tlsfront_http_requests_total{code="5xx"}[5m])) / time()')
    {'tlsfront_http_requests_total'}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"
FILES = ("tlsfront.json", "tlslog.json")
DS_VAR = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str  # "<id> <title>" or "annotation <name>"
    ref: str
    expr: str
    instant: bool

    def __str__(self) -> str:
        return f"{self.dashboard} panel {self.panel} query {self.ref}: {self.expr}"


def load(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


def all_panels(dash: dict) -> list[dict]:
    """Every panel, rows' nested (collapsed) panels included."""
    out: list[dict] = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(name: str) -> list[Query]:
    dash = load(name)
    out = [Query(name, f"{p['id']} {p['title']!r}", t["refId"], t["expr"], bool(t.get("instant")))
           for p in all_panels(dash) for t in p.get("targets", [])]
    out += [Query(name, f"annotation {a['name']!r}", "-", a["expr"], False)
            for a in dash["annotations"]["list"] if "expr" in a]
    return out


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<sel>.+),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)$")


def variable_queries(name: str) -> dict[str, tuple[str | None, str]]:
    """Query variables -> (series selector or None, label) of their ``label_values(...)``."""
    out = {}
    for v in load(name)["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = _LABEL_VALUES.match(q.strip())
        if not m:
            raise ValueError(f"{name}: variable {v['name']}: {q!r} is not label_values(SELECTOR, LABEL)")
        out[v["name"]] = (m.group("sel"), m.group("label"))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace ``${name}`` and ``$name`` (longest names first, so $__rate_interval is not $__range + ...)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    if "$" in expr:
        raise ValueError(f"unsubstituted variable in {expr!r}")
    return expr


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_BRACES = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                       "group_right", "inf", "nan", "atan2"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (identifiers that are not functions, keywords or labels)."""
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("5m", text)  # Grafana's variables outside strings are durations (offset $__range)
    text = _BRACES.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {m.group(1) for m in _IDENT.finditer(text)
            if m.group(2) is None and m.group(1).lower() not in _KEYWORDS}
