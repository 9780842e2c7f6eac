"""Reading one TOML table of the configuration, collecting problems instead of raising.

`_Ctx` is where the loader is: the file, the `errors.Collector` every problem goes to, the
directory relative paths resolve against, and the line index (config_lines.py) that puts
a line number on each message. `_Table` reads one table through typed getters that report
a wrong type, a bad value or an unknown key (with "did you mean") and return a default, so
one pass over the file finds every problem. Example::

    t = _Table(ctx, {"workers": "4"}, "server")
    t.get("workers", int, None, _non_negative)   # -> None, and the error
    #   conf/x.toml:3: server.workers: must be an integer, not a string ('4')
    t.finish()                                   # unknown keys are reported here
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

from .config_lines import Lines
from .errors import Collector

_MISSING = object()


class _Ctx:
    """Where we are: the file, the collector, the directory relative paths resolve against."""

    def __init__(self, path: Path, text: str = "") -> None:
        self.path = path
        self.base = path.parent
        self.c = Collector()
        self.lines = Lines(text)

    def where(self, key: str) -> str:
        return f"{self.path}: {key}" if key else str(self.path)

    def error(self, key: str, message: str, fix: str = "") -> None:
        self.c.error(self.where(key), message, fix, self.lines.line(key) if key else None)

    def warn(self, key: str, message: str, fix: str = "") -> None:
        self.c.warn(self.where(key), message, fix, self.lines.line(key) if key else None)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


class _Table:
    """A TOML table being read: typed getters that report problems and track unknown keys."""

    def __init__(self, ctx: _Ctx, data: Any, key: str) -> None:
        self.ctx = ctx
        self.key = key
        self.used: set[str] = set()
        if not isinstance(data, dict):
            ctx.error(key, f"must be a table, not {_type_name(data)} ({data!r})",
                      f"write [{key}] with keys below it")
            data = {}
        self.data = data

    def sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name, _MISSING)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None,
            check: Callable[[Any], str | None] | None = None, fix: str = "") -> Any:
        value = self.raw(name)
        if value is _MISSING:
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            want = " or ".join(_type_name(k()) for k in kinds)
            self.ctx.error(self.sub(name), f"must be {want}, not {_type_name(value)} ({value!r})", fix)
            return default
        if check is not None:
            message = check(value)
            if message:
                self.ctx.error(self.sub(name), message, fix)
                return default
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.ctx.error(self.sub(name), f"{value!r} is not one of {', '.join(choices)}{hint}",
                           f"set {name} to one of: {', '.join(choices)}")
            return default
        return value

    def str_list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.ctx.error(self.sub(name), f"must be a list of strings, not {value!r}",
                           f'write {name} = ["...", "..."]')
            return default
        return tuple(value)

    def finish(self, known: tuple[str, ...] | list[str] | set[str] | None = None) -> None:
        """Report keys nobody asked for; `known` adds names accepted elsewhere."""
        allowed = set(self.used) | set(known or ())
        for name in self.data:
            if name in allowed:
                continue
            close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
            if close:
                self.ctx.error(self.sub(name), f"unknown key {name!r} (did you mean {close[0]!r}?)",
                               f"rename it to {close[0]!r} or remove it")
            else:
                self.ctx.error(self.sub(name), f"unknown key {name!r}",
                               f"remove it; known keys here: {', '.join(sorted(allowed))}")


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value!r}"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value!r}"


def _replace(obj: Any, values: dict[str, Any]) -> Any:
    from dataclasses import replace

    return replace(obj, **values) if values else obj
