"""Instants and days: the one place that parses and formats them.

Graph writes a DateTimeOffset as `2026-11-28T09:15:02.1234567Z` (7 fractional digits, UTC) but may send
other precisions or offsets. The store keeps every instant it sorts or filters on in that widest form
(`canonical_instant`), so that string order is time order. Days are calendar dates (`YYYY-MM-DD`); which day
is "yesterday" depends on the tenant's time zone.
"""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc
# Graph's own form of a DateTimeOffset (UTC, 7 fractional digits): canonical already.
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", re.ASCII)


def parse_instant(text: str) -> dt.datetime:
    """A Graph DateTimeOffset string (any fractional digits, Z or offset; no zone means UTC) as an aware
    UTC datetime (microseconds: a 7th digit is dropped)."""
    try:
        # Python 3.11 reads Graph's own form (7 digits, truncated to 6; Z) at C speed: this runs once per row.
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (TypeError, ValueError):
        pass
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    if "." in value:
        # fromisoformat takes at most 6 fractional digits in some spellings; Graph sends 7.
        head, rest = value.split(".", 1)
        digits = _leading_digits(rest)
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def canonical_instant(text: str) -> str:
    """A DateTimeOffset string in UTC with exactly 7 fractional digits and Z (Graph's widest form), so that
    such strings sort by time whatever precision or offset they were written with. Keeps all 7 digits, which
    Python's datetime (microseconds) cannot."""
    if isinstance(text, str) and _CANONICAL.fullmatch(text):
        # The common case (every row Graph sends), without the general parser: only the calendar and the
        # clock need checking.
        dt.datetime.fromisoformat(text[:19])
        return text
    instant = parse_instant(text)
    _, dot, rest = text.strip().partition(".")
    digits = _leading_digits(rest) if dot else ""
    # strftime does not zero-pad years below 1000 on every platform; Graph's "never" is 0001-01-01.
    return f"{instant.year:04d}-{instant:%m-%dT%H:%M:%S}.{digits[:7].ljust(7, '0')}Z"


def format_instant(instant: dt.datetime, timespec: str = "seconds") -> str:
    """An aware datetime as UTC ISO 8601 with Z: `2026-11-28T00:00:00Z` (timespec as datetime.isoformat)."""
    return instant.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def now_iso(now: dt.datetime | None = None) -> str:
    """The time of an event as records keep it: UTC, milliseconds, Z."""
    return format_instant(now or dt.datetime.now(UTC), "milliseconds")


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from `first` to `last`, both included (empty when last is before first)."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def yesterday(time_zone: str, now: dt.datetime | None = None) -> dt.date:
    """The last whole day in `time_zone`: the newest day a collection may ask for."""
    now = now or dt.datetime.now(UTC)
    return (now.astimezone(ZoneInfo(time_zone)) - dt.timedelta(days=1)).date()


def _leading_digits(text: str) -> str:
    end = 0
    while end < len(text) and text[end].isdigit():
        end += 1
    return text[:end]
