"""Days in the configured time zone, turned into the UTC windows Graph is asked for."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC. Graph's getPstnCalls treats `end` as inclusive, so adjacent windows may return the
    same row twice; rows are deduplicated by id downstream, never dropped."""
    start: dt.datetime
    end: dt.datetime

    def contains(self, instant: dt.datetime) -> bool:
        return self.start <= instant < self.end


def day_window(day: dt.date, time_zone: str) -> Window:
    """The UTC window of a calendar day in `time_zone` (23 or 25 hours long on DST change days)."""
    zone = ZoneInfo(time_zone)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return Window(start.astimezone(UTC), end.astimezone(UTC))


def yesterday(time_zone: str, now: dt.datetime | None = None) -> dt.date:
    now = now or dt.datetime.now(UTC)
    return (now.astimezone(ZoneInfo(time_zone)) - dt.timedelta(days=1)).date()


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


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def parse_instant(text: str) -> dt.datetime:
    """A Graph DateTimeOffset string (7 fractional digits, Z or offset) as an aware UTC datetime."""
    try:
        # Python 3.11 reads Graph's own form (7 digits, truncated to 6 as below; Z) at C speed: once per row.
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (TypeError, ValueError):
        pass
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    if "." in value:
        # Python parses at most 6 fractional digits; Graph sends 7.
        head, rest = value.split(".", 1)
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def canonical_instant(text: str) -> str:
    """A DateTimeOffset string in UTC with exactly 7 fractional digits and Z (Graph's widest form), so that
    such strings sort by time whatever precision or offset they were written with. Keeps all 7 digits, which
    Python's datetime (microseconds) cannot."""
    instant = parse_instant(text)
    _, dot, rest = text.strip().partition(".")
    digits = ""
    for ch in rest if dot else "":
        if not ch.isdigit():
            break
        digits += ch
    # strftime does not zero-pad years below 1000 on every platform; Graph's "never" is 0001-01-01.
    return f"{instant.year:04d}-{instant:%m-%dT%H:%M:%S}.{digits[:7].ljust(7, '0')}Z"


def utc_day(text: str) -> str:
    """The UTC calendar day (YYYY-MM-DD) of a Graph DateTimeOffset string: the partition key of a row."""
    return parse_instant(text).date().isoformat()
