"""Timestamps of log lines -> POSIX seconds, cheaply (a cache per hour; no strptime per line).

Apache's and nginx's error logs and HAProxy's accept date carry no time zone: they are in the server's local time,
so ``--timezone`` names it (default: this machine's local zone).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


class Clock:
    """Converts broken-down local times to epoch seconds in one zone; picklable (the cache is rebuilt)."""

    def __init__(self, tz: str | None = None) -> None:
        self.tz_name = tz
        self._tz = ZoneInfo(tz) if tz else None
        self._hours: dict[tuple[int, int, int, int], float] = {}

    def __getstate__(self):
        return {"tz_name": self.tz_name}

    def __setstate__(self, state):
        self.__init__(state["tz_name"])

    def epoch(self, year: int, month: int, day: int, hour: int, minute: int, second: float) -> float | None:
        key = (year, month, day, hour)
        base = self._hours.get(key)
        if base is None:
            try:
                moment = dt.datetime(year, month, day, hour)
                if self._tz is not None:
                    moment = moment.replace(tzinfo=self._tz)
                base = moment.timestamp()  # naive means local time
            except (ValueError, OverflowError, OSError):
                return None
            self._hours[key] = base
        return base + minute * 60 + second

    def apache(self, text: str) -> float | None:
        """``Fri Nov 27 10:50:52.123456 2026`` (2.4) or ``Wed Oct 11 14:32:52 2000`` (2.0/2.2)."""
        try:
            _dow, mon, day, hms, year = text.split()
            h, m, s = hms.split(":")
            return self.epoch(int(year), MONTHS[mon], int(day), int(h), int(m), float(s))
        except (ValueError, KeyError):
            return None

    def nginx(self, date: str, hms: str) -> float | None:
        """``2026/11/27`` ``10:50:52``."""
        try:
            y, mo, d = date.split("/")
            h, m, s = hms.split(":")
            return self.epoch(int(y), int(mo), int(d), int(h), int(m), float(s))
        except ValueError:
            return None

    def clf(self, text: str) -> float | None:
        """HAProxy's accept date ``27/Nov/2026:10:50:52.123`` (local time, no zone)."""
        try:
            date, h, m, s = text.split(":")
            d, mon, y = date.split("/")
            return self.epoch(int(y), MONTHS[mon], int(d), int(h), int(m), float(s))
        except (ValueError, KeyError):
            return None
