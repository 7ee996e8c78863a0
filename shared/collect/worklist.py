"""The work list: which days of a feed are due at a tick of the timer, and how much work is left.

The timer ticks often (COLLECT_TIMER_SCHEDULE, every minute by default); the daily rhythm is COLLECT_SCHEDULE.
Its latest occurrence at or before the tick is the *anchor*, and at a tick a day is due when it is
  new        up to yesterday as of the anchor, and never collected successfully;
  re-scanned one of the last RESCAN_DAYS days up to that day, and not collected successfully since the anchor;
  failed     its last run failed before the anchor, or more than FAILED_RETRY_MINUTES ago (0: at every tick);
  requested  in a pending backfill request, and not collected successfully since the request was made.
So the first tick after an occurrence does the daily run; the ticks after it continue whatever a run's time
budget left over (a backfill, a first run's 30 days, a long outage), run after run; and once that is done a
tick finds nothing and returns at once. Days only become due at an occurrence, so the daily rhythm holds
however often the timer ticks.

Plain values in, plain values out: day states and backfill requests as the ledger stores them.
"""
from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

from croniter import croniter

from ..instants import UTC, days_between, format_instant, parse_instant, yesterday

# Pages of how many recent successful days estimate the pages of a day never collected.
ESTIMATE_FROM_DAYS = 14


def anchor(schedule: str, now: dt.datetime) -> dt.datetime:
    """The latest occurrence of the NCRONTAB `schedule` at or before `now` (UTC)."""
    now = now.astimezone(UTC)
    # croniter's get_prev is strictly before its start: start a second later so an occurrence at `now` counts.
    start = now.replace(microsecond=0) + dt.timedelta(seconds=1)
    return croniter(schedule, start, second_at_beginning=True).get_prev(dt.datetime).astimezone(UTC)


def _before(instant: str | None, limit: dt.datetime) -> bool:
    """Whether a ledger instant is missing or earlier than `limit`."""
    return instant is None or parse_instant(instant) < limit


def due_days(states: dict[str, dict], backfills: list[dict], first: dt.date, time_zone: str, rescan_days: int,
             schedule: str, failed_retry: dt.timedelta, now: dt.datetime) -> list[dt.date]:
    """The days of one feed due at `now`, oldest first. `states` are the feed's day states by day, `backfills`
    its pending requests, `first` its coverage start."""
    mark = anchor(schedule, now)
    last = yesterday(time_zone, mark)
    due: set[dt.date] = set()
    for day in days_between(first, last) if first <= last else []:
        state = states.get(day.isoformat()) or {}
        if state.get("lastSuccessAt") is None:
            if state.get("status") != "failed" or _failed_due(state, mark, failed_retry, now):
                due.add(day)
    for day in days_between(max(first, last - dt.timedelta(days=rescan_days - 1)), last) if rescan_days else []:
        state = states.get(day.isoformat()) or {}
        if _before(state.get("lastSuccessAt"), mark):
            if state.get("status") != "failed" or _failed_due(state, mark, failed_retry, now):
                due.add(day)
    for request in backfills:
        since = parse_instant(request["requestedAt"])
        for day in days_between(dt.date.fromisoformat(request["from"]), dt.date.fromisoformat(request["to"])):
            if day > last:
                continue
            state = states.get(day.isoformat()) or {}
            if _before(state.get("lastSuccessAt"), since):
                # A request retries a failed day once at once; after that, as any failed day.
                if state.get("status") != "failed" or _failed_due(state, max(mark, since), failed_retry, now):
                    due.add(day)
    return sorted(due)


def _failed_due(state: dict, mark: dt.datetime, failed_retry: dt.timedelta, now: dt.datetime) -> bool:
    # A day that fails (a missing permission, a bad page) is not asked again at every tick: Graph would see the
    # same failing request every minute. It is retried at the next occurrence, or once the retry delay passed.
    last_run = state.get("lastRunAt")
    if failed_retry <= dt.timedelta(0):
        return True
    return last_run is None or parse_instant(last_run) < mark or parse_instant(last_run) <= now - failed_retry


@dataclass(frozen=True)
class Backlog:
    """One feed's work left, in days and in Graph requests, and when it should be done at the current limits."""
    feed: str
    days: int
    requests: int
    pages_per_day: float        # the estimate for a day never collected
    requests_per_minute: float  # this feed's share of the limits
    finish: str | None          # UTC instant; None when nothing is left

    def as_dict(self) -> dict:
        return {"days": self.days, "requests": self.requests, "pagesPerDay": self.pages_per_day,
                "requestsPerMinute": self.requests_per_minute, "finish": self.finish}


def pages_estimate(states: dict[str, dict], minimum: int = 1) -> float:
    """Pages of a day never collected: the median of the most recent successful days, at least `minimum`."""
    recent = sorted((day for day, s in states.items() if s.get("lastSuccessAt") and s.get("pages")), reverse=True)
    pages = [states[day]["pages"] for day in recent[:ESTIMATE_FROM_DAYS]]
    return float(max(minimum, statistics.median(pages))) if pages else float(minimum)


def feed_rate(function_per_minute: float, app_per_minute: float, tenant_per_minute: float, busy_feeds: int) -> float:
    """Requests per minute one feed gets while `busy_feeds` feeds have work: its function's own limit, or its
    share of the app's and the tenant's, whichever is lower."""
    share = max(1, busy_feeds)
    return min(function_per_minute, app_per_minute / share, tenant_per_minute / share)


def backlogs(due: dict[str, list[dt.date]], states: dict[str, dict[str, dict]], limits: tuple[float, float, float],
             minimum_pages: int, now: dt.datetime) -> dict[str, Backlog]:
    """The backlog of each feed from its due days and day states; `limits` are the function, app and tenant
    requests per minute, `minimum_pages` the requests a day takes at least (one per sub-window)."""
    busy = sum(1 for days in due.values() if days)
    out = {}
    for feed, days in due.items():
        feed_states = states.get(feed, {})
        estimate = pages_estimate(feed_states, minimum_pages)
        # A day collected before is estimated by its own pages; a new one by the recent days'.
        requests = sum(max(minimum_pages, (feed_states.get(d.isoformat()) or {}).get("pages") or estimate)
                       for d in days)
        rate = feed_rate(*limits, busy)
        finish = format_instant(now + dt.timedelta(minutes=requests / rate)) if days else None
        out[feed] = Backlog(feed, len(days), int(round(requests)), estimate, round(rate, 3), finish)
    return out
