"""Days in the configured time zone, turned into the UTC windows Graph is asked for."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ..instants import UTC, days_between


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC. Graph's getPstnCalls treats `end` as inclusive, so adjacent windows may return the
    same row twice; rows are deduplicated by id downstream, never dropped."""
    start: dt.datetime
    end: dt.datetime


def day_window(day: dt.date, time_zone: str) -> Window:
    """The UTC window of a calendar day in `time_zone` (23 or 25 hours long on DST change days)."""
    zone = ZoneInfo(time_zone)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return Window(start.astimezone(UTC), end.astimezone(UTC))


def split(window: Window, parts: int) -> list[Window]:
    """Cut a window into `parts` adjacent sub-windows of (nearly) equal length, whole seconds at the cuts."""
    if parts <= 1:
        return [window]
    length = (window.end - window.start).total_seconds()
    cuts = [window.start + dt.timedelta(seconds=round(length * i / parts)) for i in range(parts + 1)]
    cuts[-1] = window.end
    return [Window(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def utc_days(window: Window) -> list[str]:
    """The UTC days (day partitions) a window's instants fall in."""
    first = window.start.astimezone(UTC).date()
    last = (window.end - dt.timedelta(microseconds=1)).astimezone(UTC).date()
    return [d.isoformat() for d in days_between(first, last)]
