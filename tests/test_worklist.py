"""The work list of a tick (shared/collect/worklist.py): pure logic, no stores."""
from __future__ import annotations

import datetime as dt

import pytest

from shared.collect.worklist import anchor, backlogs, due_days, feed_rate, pages_estimate

UTC = dt.timezone.utc
DAILY = "0 30 3 * * *"
RETRY = dt.timedelta(minutes=30)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ok(when: str, pages: int = 4) -> dict:
    return {"status": "succeeded", "lastSuccessAt": when, "lastRunAt": when, "pages": pages}


def failed(when: str) -> dict:
    return {"status": "failed", "lastSuccessAt": None, "lastRunAt": when}


def due(states, now, first="2026-11-20", backfills=(), rescan=3, schedule=DAILY, zone="UTC"):
    return [d.isoformat() for d in due_days(states, list(backfills), dt.date.fromisoformat(first), zone, rescan,
                                            schedule, RETRY, at(now))]


def test_anchor_is_the_latest_occurrence_at_or_before_now():
    assert anchor(DAILY, at("2026-12-02T03:30:00")) == at("2026-12-02T03:30:00")
    assert anchor(DAILY, at("2026-12-02T03:29:59")) == at("2026-12-01T03:30:00")
    assert anchor(DAILY, at("2026-12-02T17:00:00")) == at("2026-12-02T03:30:00")
    assert anchor("0 0 * * * *", at("2026-12-02T17:59:30")) == at("2026-12-02T17:00:00")


def test_the_first_tick_after_the_occurrence_is_the_daily_run():
    # Collected up to 11-30 at yesterday's occurrence; at today's, 12-01 is new and the last three days re-scanned.
    states = {f"2026-11-{d:02d}": ok("2026-12-01T03:31:00") for d in range(20, 31)}
    assert due(states, "2026-12-02T03:30:05") == ["2026-11-29", "2026-11-30", "2026-12-01"]


def test_ticks_after_the_daily_run_find_nothing_until_the_next_occurrence():
    states = {f"2026-11-{d:02d}": ok("2026-12-01T03:31:00") for d in range(20, 29)}
    states.update({d: ok("2026-12-02T03:31:00") for d in ("2026-11-29", "2026-11-30", "2026-12-01")})
    assert due(states, "2026-12-02T03:32:00") == []
    assert due(states, "2026-12-02T23:59:00") == []
    # A new day (12-02 in UTC since midnight) waits for the occurrence: the daily rhythm holds.
    assert due(states, "2026-12-03T03:29:59") == []
    assert due(states, "2026-12-03T03:30:00") == ["2026-11-30", "2026-12-01", "2026-12-02"]


def test_what_a_budget_left_is_due_at_the_next_tick():
    # The daily run re-scanned 11-29 only, then its budget ended: 11-30 and 12-01 are still due.
    states = {f"2026-11-{d:02d}": ok("2026-12-01T03:31:00") for d in range(20, 31)}
    states["2026-11-29"] = ok("2026-12-02T03:40:00")
    assert due(states, "2026-12-02T04:00:00") == ["2026-11-30", "2026-12-01"]


def test_a_first_run_and_a_long_outage_are_missing_days():
    assert due({}, "2026-12-02T09:00:00", first="2026-11-25") == [f"2026-11-{d}" for d in range(25, 31)] + \
        ["2026-12-01"]
    states = {f"2026-11-{d:02d}": ok("2026-11-22T03:31:00") for d in range(20, 22)}
    assert due(states, "2026-12-02T09:00:00", rescan=0) == [f"2026-11-{d}" for d in range(22, 31)] + ["2026-12-01"]


def test_a_failed_day_waits_for_the_retry_delay_or_the_next_occurrence():
    states = {f"2026-11-{d:02d}": ok("2026-12-02T03:31:00") for d in range(20, 31)}
    states["2026-12-01"] = ok("2026-12-02T03:31:00")
    states["2026-11-25"] = failed("2026-12-02T03:31:00")
    assert due(states, "2026-12-02T03:45:00") == []
    assert due(states, "2026-12-02T04:01:00") == ["2026-11-25"]
    # Failed at yesterday's run and not retried since: the new occurrence retries it whatever the delay.
    states["2026-11-25"] = failed("2026-12-02T03:29:00")
    assert "2026-11-25" in due(states, "2026-12-02T03:30:10")


def test_backfill_days_are_due_until_collected_after_the_request():
    states = {f"2026-11-{d:02d}": ok("2026-12-02T03:31:00") for d in range(20, 31)}
    states["2026-12-01"] = ok("2026-12-02T03:31:00")
    request = {"from": "2026-11-10", "to": "2026-11-21", "requestedAt": "2026-12-02T05:00:00Z"}
    left = due(states, "2026-12-02T05:01:00", backfills=[request])
    assert left == [f"2026-11-{d}" for d in range(10, 22)], "before the coverage start too, and re-collected"
    states.update({f"2026-11-{d}": ok("2026-12-02T05:02:00") for d in range(10, 16)})
    assert due(states, "2026-12-02T05:03:00", backfills=[request]) == [f"2026-11-{d}" for d in range(16, 22)]


def test_the_tenant_time_zone_decides_yesterday_of_the_occurrence():
    # At 03:30 UTC on 12-02 it is still 12-01 in Los Angeles: its yesterday is 11-30.
    assert due({}, "2026-12-02T03:30:00", first="2026-11-29", rescan=0, zone="America/Los_Angeles") == \
        ["2026-11-29", "2026-11-30"]


def test_pages_estimate_uses_recent_successful_days():
    states = {f"2026-11-{d:02d}": ok("2026-12-01T00:00:00", pages=d) for d in range(1, 30)}
    assert pages_estimate(states) == float(sorted(range(16, 30))[7] + sorted(range(16, 30))[6]) / 2
    assert pages_estimate({}) == 1.0 and pages_estimate({}, minimum=4) == 4.0
    assert pages_estimate({"2026-11-01": failed("2026-12-01T00:00:00")}) == 1.0


@pytest.mark.parametrize("busy, expected", [(1, 47.0), (2, 47.0), (4, 47.0), (5, 38.0)])
def test_feed_rate_is_the_function_limit_or_a_share_of_the_app_limit(busy, expected):
    assert feed_rate(47, 190, 950, busy) == expected


def test_backlogs_count_days_requests_and_the_finish():
    states = {"pstn": {"2026-11-01": ok("2026-12-01T00:00:00", pages=100),
                       "2026-11-02": ok("2026-12-01T00:00:00", pages=120)}}
    days = [dt.date(2026, 11, 2)] + [dt.date(2025, 12, 1) + dt.timedelta(days=n) for n in range(10)]
    now = at("2026-12-02T10:00:00")
    out = backlogs({"pstn": days, "directRouting": []}, states, (47, 190, 950), 1, now)
    pstn = out["pstn"]
    assert (pstn.days, pstn.pages_per_day, pstn.requests) == (11, 110.0, 120 + 10 * 110)
    minutes = (120 + 1100) / 47
    assert pstn.finish == (now + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert out["directRouting"].days == 0 and out["directRouting"].finish is None
    # One request per sub-window at least, however few pages a day had.
    assert backlogs({"pstn": days[:1]}, states, (47, 190, 950), 200, now)["pstn"].requests == 200
