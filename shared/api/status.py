"""What an operator asks first: is it collecting, and is anything missing? Built from the run ledger."""
from __future__ import annotations

import datetime as dt

from croniter import croniter

from ..collect.worklist import backlogs, due_days
from ..config.feeds import enabled_feeds
from ..config.settings import Settings
from ..instants import days_between, format_instant, yesterday
from ..stores.ledger import Ledger

DEFAULT_DAYS = 90


def next_run(schedule: str, now: dt.datetime) -> str | None:
    """The next time the NCRONTAB schedule fires after `now` (UTC), or None if it is a %SETTING% expression."""
    if not croniter.is_valid(schedule, second_at_beginning=True):
        return None
    following = croniter(schedule, now.astimezone(dt.timezone.utc), second_at_beginning=True).get_next(dt.datetime)
    return format_instant(following)


def build_status(settings: Settings, ledger: Ledger, now: dt.datetime | None = None,
                 days: int = DEFAULT_DAYS) -> dict:
    now = now or dt.datetime.now(dt.timezone.utc)
    last_day = yesterday(settings.time_zone, now)
    window_start = last_day - dt.timedelta(days=days - 1)
    feeds, due, all_states = {}, {}, {}
    for feed in enabled_feeds(settings):
        states = all_states[feed.name] = ledger.day_states(feed.name)
        coverage_start = ledger.planned_coverage_start(feed.name, settings.coverage_start,
                                                        last_day + dt.timedelta(days=1))
        due[feed.name] = due_days(states, ledger.backfills(feed.name, pending_only=True), coverage_start,
                                  settings.time_zone, settings.rescan_days, settings.collect_schedule,
                                  dt.timedelta(minutes=settings.failed_retry_minutes), now)
        first = max(coverage_start, window_start)
        runs = ledger.runs(feed.name, since=(window_start - dt.timedelta(days=1)).isoformat())
        day_rows, gaps, failed = [], [], []
        for day in days_between(first, last_day) if first <= last_day else []:
            state = states.get(day.isoformat(), {})
            status = state.get("status") or "missing"
            entry = {"day": day.isoformat(), "status": status, "rows": state.get("rows"),
                     "lastRunAt": state.get("lastRunAt"), "lastSuccessAt": state.get("lastSuccessAt"),
                     "error": state.get("lastError") if status == "failed" else None}
            day_rows.append(entry)
            if not state.get("lastSuccessAt"):
                gaps.append(day.isoformat())
            if status == "failed":
                failed.append({"day": day.isoformat(), "error": state.get("lastError"),
                               "lastRunAt": state.get("lastRunAt")})
        finished = [r for r in runs if r.get("outcome") in ("succeeded", "failed")]
        last = max(finished, key=lambda r: r["ended"], default=None)
        last_success = max((s.get("lastSuccessAt") or "" for s in states.values()), default="") or None
        feeds[feed.name] = {
            "coverageStart": coverage_start.isoformat(),
            "window": {"from": first.isoformat(), "to": last_day.isoformat()},
            "lastRun": _run_summary(last),
            "lastSuccessAt": last_success,
            "days": day_rows,
            "daysCovered": sum(1 for d in day_rows if d["lastSuccessAt"]),
            "rows": sum(d["rows"] or 0 for d in day_rows),
            "gaps": gaps,
            "failed": failed,
            "recentRuns": [_run_summary(r) for r in sorted(finished, key=lambda r: r["ended"], reverse=True)[:20]],
            "backfills": [_backfill_summary(b) for b in ledger.backfills(feed.name)][-20:],
        }
    left = backlogs(due, all_states, (settings.graph_function_requests_per_minute,
                                      settings.graph_app_requests_per_minute,
                                      settings.graph_tenant_requests_per_minute), settings.subwindows, now)
    for name, backlog in left.items():
        feeds[name]["backlog"] = {**backlog.as_dict(), "due": [d.isoformat() for d in due[name]][:366]}
    finishes = [b.finish for b in left.values() if b.finish]
    return {
        "generatedAt": format_instant(now),
        "backlog": {"days": sum(b.days for b in left.values()), "requests": sum(b.requests for b in left.values()),
                    "finish": max(finishes, default=None)},
        "healthy": all(not f["failed"] and not f["gaps"] for f in feeds.values()),
        "nextRun": next_run(settings.collect_schedule, now),
        "feeds": feeds,
        "settings": settings.masked(),
    }


def _run_summary(run: dict | None) -> dict | None:
    if run is None:
        return None
    keys = ("run_id", "feed", "day", "outcome", "started", "ended", "rows", "pages", "new", "changed", "unchanged",
            "retries", "throttled_seconds", "duration_seconds", "error")
    return {k: run.get(k) for k in keys}


def _backfill_summary(request: dict) -> dict:
    return {k: request.get(k) for k in ("id", "feed", "from", "to", "status", "requestedAt", "completedAt")}
