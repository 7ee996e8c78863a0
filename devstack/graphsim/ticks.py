"""Instants as integer ticks: 100-nanosecond units since 0001-01-01T00:00:00Z (the .NET convention).

Graph prints seven fractional digits ("2019-11-01T00:00:08.2589935Z"); Python's datetime stops at
microseconds, so a window bound given to the tick could not be compared exactly. Integers can.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone

TICKS_PER_SECOND = 10_000_000
DAY_TICKS = 86_400 * TICKS_PER_SECOND

# Date only, or date + time + REQUIRED offset: an Edm.DateTimeOffset without an offset is ambiguous,
# and rejecting it catches clients that print naive datetimes.
_LITERAL = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?([Zz]|[+-]\d{2}:\d{2}))?"
)


class LiteralError(ValueError):
    """A DateTimeOffset literal that cannot be parsed."""


def parse_literal(text: str) -> int:
    """Ticks of a Graph DateTimeOffset literal: "2019-11-01", "2024-05-01T00:00:00Z", "...T10:00:00.5+02:00".

    A date alone means 00:00:00Z of that date. A space where the offset sign belongs is read as "+",
    because a "+" that went through form-decoding arrives as a space.
    """
    m = _LITERAL.fullmatch(text.strip().replace(" ", "+"))
    if not m:
        raise LiteralError(f"'{text}' is not a valid DateTimeOffset")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as exc:
        raise LiteralError(f"'{text}' is not a valid DateTimeOffset: {exc}") from None
    ticks = _datetime_ticks(moment) + int((fraction or "")[:7].ljust(7, "0"))
    if offset and offset.upper() != "Z":
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 14 or minutes > 59:
            raise LiteralError(f"'{text}' has an invalid offset")
        ticks -= sign * (hours * 3600 + minutes * 60) * TICKS_PER_SECOND
    return ticks


def to_ticks(value: str | datetime | date) -> int:
    """Ticks of a literal string, an aware datetime (naive means UTC) or a date (its midnight UTC)."""
    if isinstance(value, str):
        return parse_literal(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return _datetime_ticks(value)
    if isinstance(value, date):
        return day_start(value.toordinal())
    raise TypeError(f"expected a string, datetime or date, not {type(value).__name__}")


def _datetime_ticks(naive_utc: datetime) -> int:
    seconds = naive_utc.hour * 3600 + naive_utc.minute * 60 + naive_utc.second
    return (day_start(naive_utc.toordinal()) + seconds * TICKS_PER_SECOND
            + naive_utc.microsecond * 10)


def day_start(ordinal: int) -> int:
    """Ticks at 00:00:00Z of the day with this proleptic Gregorian ordinal (date.toordinal())."""
    return (ordinal - 1) * DAY_TICKS


def day_of(ticks: int) -> int:
    """Ordinal of the UTC day holding this instant."""
    return ticks // DAY_TICKS + 1


def iso_day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


_prefixes: dict[int, str] = {}


def format_ticks(ticks: int) -> str:
    """Graph's form: "2019-11-01T00:00:08.2589935Z" (always seven fractional digits)."""
    days, rest = divmod(ticks, DAY_TICKS)
    prefix = _prefixes.get(days)
    if prefix is None:  # one date() per day instead of one per row: row generation formats a lot
        prefix = _prefixes[days] = date.fromordinal(days + 1).isoformat()
    seconds, fraction = divmod(rest, TICKS_PER_SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:07d}Z"
