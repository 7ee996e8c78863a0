"""Late rows: extra rows of a day that Graph only starts returning some time after the day has passed.

A rule (JSON, also over the control API):
  {"day": "2024-05-01", "feed": "pstn", "count": 40, "after_requests": 5}
  {"day": "2024-05-01", "feed": "directRouting", "count": 10, "after_seconds": 2.5}
The rows exist from the start (the truth always holds them) but responses include them only once
`after_requests` Graph requests have been received, or `after_seconds` have passed, counted from the
moment the rules were configured or the simulator was reset. Each rule needs exactly one of the two;
`feed` defaults to "pstn".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .checks import is_int, is_number
from .rows import FEEDS

_FIELDS = {"day", "feed", "count", "after_requests", "after_seconds"}


@dataclass(frozen=True)
class LateRule:
    index: int  # position in the configured list: keeps two identical rules' rows distinct
    day: int  # ordinal
    feed: str
    count: int
    after_requests: int | None = None
    after_seconds: float | None = None

    def as_json(self) -> dict:
        out = {"day": date.fromordinal(self.day).isoformat(), "feed": self.feed, "count": self.count}
        if self.after_requests is not None:
            out["after_requests"] = self.after_requests
        if self.after_seconds is not None:
            out["after_seconds"] = self.after_seconds
        return out

    def visible(self, requests_since: int, seconds_since: float) -> bool:
        if self.after_requests is not None:
            return requests_since >= self.after_requests
        return seconds_since >= self.after_seconds


def parse_late(index: int, obj: object) -> LateRule:
    if not isinstance(obj, dict):
        raise ValueError(f"a late_rows rule must be an object, not {obj!r}")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise ValueError(f"late_rows rule has unknown fields {sorted(unknown)}")
    try:
        day = date.fromisoformat(obj.get("day"))
    except (TypeError, ValueError):
        raise ValueError(f"late_rows 'day' must be YYYY-MM-DD, not {obj.get('day')!r}") from None
    feed, count = obj.get("feed", "pstn"), obj.get("count")
    if feed not in FEEDS:
        raise ValueError(f"late_rows 'feed' must be one of {list(FEEDS)}")
    if not is_int(count, 1):
        raise ValueError("late_rows 'count' must be an integer >= 1")
    requests, seconds = obj.get("after_requests"), obj.get("after_seconds")
    if (requests is None) == (seconds is None):
        raise ValueError("a late_rows rule needs exactly one of 'after_requests' and 'after_seconds'")
    if requests is not None and not is_int(requests, 0):
        raise ValueError("late_rows 'after_requests' must be an integer >= 0")
    if seconds is not None and not is_number(seconds, 0):
        raise ValueError("late_rows 'after_seconds' must be a number >= 0")
    return LateRule(index, day.toordinal(), feed, count, requests, seconds)
