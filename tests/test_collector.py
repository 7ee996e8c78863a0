"""The daily collector against the Graph simulator, Azurite and the Cosmos emulator (issue 3 acceptance)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.graphsim.server import GraphSimulator
from shared.collect.day import FAR_FROM_DAY, far_from_window
from shared.collect.run import run_days, run_scheduled, scheduled_work
from shared.config.feeds import FEEDS
from shared.collect.windows import Window, day_window
from shared.instants import yesterday

from .collecting import (TOKEN, archive_blobs, assert_store_equals_truth, fresh_settings, manifests,
                         new_collector, stored_rows)
from .graph_proxy import GraphProxy, first_page

ROOT = Path(__file__).resolve().parent.parent
D1 = dt.date(2026, 5, 4)
DAYS = [D1, D1 + dt.timedelta(days=1), D1 + dt.timedelta(days=2)]
PSTN = FEEDS["pstn"]
DR = FEEDS["directRouting"]


@pytest.fixture
def sim():
    with GraphSimulator(seed=7, rows_per_day={"pstn": 2500, "directRouting": 300}, token=TOKEN) as simulator:
        yield simulator


@pytest.fixture
def settings(stack, sim):
    return fresh_settings(stack, sim.url)


def _at(day: dt.date, hour: int = 4) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.timezone.utc)


def test_three_days_land_exactly_once_with_a_byte_exact_archive(settings, sim):
    report = run_days(settings, [PSTN, DR], DAYS[0], DAYS[-1])
    assert not report.failed, report.failed
    assert_store_equals_truth(settings, sim, "pstn", DAYS)
    assert_store_equals_truth(settings, sim, "directRouting", DAYS)

    sent = {entry["sha256"] for entry in sim.request_log() if entry["status"] == 200}
    blobs = archive_blobs(settings)
    for day in DAYS:
        pages = sorted(n for n in blobs if n.startswith(f"pstn/v1.0/{day:%Y/%m/%d}/") and "/page-" in n)
        assert len(pages) == 3, pages
        for name in pages:
            assert hashlib.sha256(blobs[name]).hexdigest() in sent  # byte for byte what the simulator sent
    pstn_manifests = [m for m in manifests(settings) if m["feed"] == "pstn"]
    assert sorted(m["day"] for m in pstn_manifests) == [d.isoformat() for d in DAYS]
    for manifest in pstn_manifests:
        assert manifest["outcome"] == "succeeded" and manifest["rows"] == 2500
        assert manifest["window"] == {"start": f"{manifest['day']}T00:00:00Z",
                                      "end": f"{dt.date.fromisoformat(manifest['day']) + dt.timedelta(days=1)}T00:00:00Z"}
        for page in manifest["pages"]:
            assert hashlib.sha256(blobs[page["name"]]).hexdigest() == page["sha256"]
    docs = stored_rows(settings)
    assert all(d["day"] == d["startDateTime"][:10] and len(d["rowHash"]) == 64 for d in docs)


def test_a_rerun_writes_nothing_and_counts_every_row_unchanged(settings, sim):
    run_days(settings, [PSTN], DAYS[0], DAYS[-1])
    before = {d["id"]: d["_etag"] for d in stored_rows(settings)}
    report = run_days(settings, [PSTN], DAYS[0], DAYS[-1])
    assert [(o.new, o.changed, o.unchanged) for o in report.outcomes] == [(0, 0, 2500)] * 3
    after = {d["id"]: d["_etag"] for d in stored_rows(settings)}
    assert after == before  # no document was rewritten, none added
    ledger = new_collector(settings).ledger
    runs = ledger.runs("pstn", DAYS[0].isoformat())
    assert [(r["new"], r["unchanged"]) for r in runs] == [(2500, 0), (0, 2500)]


def test_rows_that_arrive_late_are_stored_by_the_next_runs_rescan(stack, sim):
    # Recent days and the real clock: whether a day was re-scanned since the last occurrence of COLLECT_SCHEDULE
    # compares the ledger's (real) instants with it. An occurrence every second makes each run a daily one.
    last = yesterday("UTC")
    days = [last - dt.timedelta(days=n) for n in (2, 1, 0)]
    settings = fresh_settings(stack, sim.url, FEEDS="pstn", RESCAN_DAYS="3", COVERAGE_START=days[0].isoformat(),
                              COLLECT_SCHEDULE="* * * * * *")
    first = run_scheduled(settings)
    assert [o.day for o in first.outcomes] == [d.isoformat() for d in days]
    assert len(stored_rows(settings)) == 7500
    # Graph publishes 40 more rows of the middle day after the first run.
    sim.configure(late_rows=[{"day": days[1].isoformat(), "feed": "pstn", "count": 40, "after_requests": 0}])
    time.sleep(1.1)  # past the next occurrence
    second = run_scheduled(settings)
    day2 = next(o for o in second.outcomes if o.day == days[1].isoformat())
    assert (day2.new, day2.unchanged) == (40, 2500)
    assert_store_equals_truth(settings, sim, "pstn", days)


def test_missed_days_are_caught_up_oldest_first_within_the_budget(stack, sim):
    missed = [D1 + dt.timedelta(days=i) for i in range(5)]
    settings = fresh_settings(stack, sim.url, FEEDS="pstn", RESCAN_DAYS="0", COVERAGE_START=missed[0].isoformat(),
                              TIME_BUDGET_SECONDS="6")
    now = _at(missed[-1] + dt.timedelta(days=1))
    sim.configure(latency=0.8)  # three pages a day: about 2.4 s a day, so a 6 s budget holds about two days
    short = run_scheduled(settings, now=now)
    assert [o.day for o in short.outcomes] == [d.isoformat() for d in missed[:len(short.outcomes)]]
    assert 1 <= len(short.outcomes) < 5 and len(short.deferred) == 5 - len(short.outcomes)
    sim.configure(latency=0)
    rest = run_scheduled(settings, now=now)
    assert [o.day for o in rest.outcomes] == [d.isoformat() for d in missed[len(short.outcomes):]]
    assert not rest.deferred and not rest.failed
    assert_store_equals_truth(settings, sim, "pstn", missed)
    assert scheduled_work(settings, new_collector(settings).ledger, now) == []


def test_first_run_without_coverage_start_goes_30_days_back(stack, sim):
    settings = fresh_settings(stack, sim.url, FEEDS="pstn", RESCAN_DAYS="3")
    collector = new_collector(settings)
    work = scheduled_work(settings, collector.ledger, _at(D1))
    assert [d for _, d in work] == [D1 - dt.timedelta(days=n) for n in range(30, 0, -1)]


def test_throttling_server_errors_and_a_dropped_connection_still_give_the_full_truth(settings, sim):
    sim.configure(faults=[
        {"kind": "status", "status": 503, "times": 2, "skip": 0},
        {"kind": "status", "status": 429, "retry_after": 1, "times": 2, "skip": 1000},
        {"kind": "drop", "times": 1, "skip": 2000},  # mid-paging: the connection closes without an answer
        {"kind": "status", "status": 504, "times": 1, "skip": 2000},
    ])
    started = time.monotonic()
    report = run_days(settings, [PSTN], DAYS[0], DAYS[0])
    elapsed = time.monotonic() - started
    assert not report.failed, report.failed
    assert elapsed >= 2.0  # two 429s with Retry-After: 1 were honoured
    assert report.outcomes[0].retries >= 6 and report.outcomes[0].throttled_seconds >= 2
    assert sim.stats()["faults_fired"] == 6
    assert_store_equals_truth(settings, sim, "pstn", [DAYS[0]])


def test_a_permanent_403_fails_the_day_with_the_permission_and_touches_nothing_else(settings, sim):
    run_days(settings, [PSTN], DAYS[0], DAYS[0])
    before = {d["id"]: d["_etag"] for d in stored_rows(settings)}
    sim.configure(faults=[{"kind": "status", "status": 403, "times": 100, "feed": "pstn"}])
    report = run_days(settings, [PSTN, DR], DAYS[0], DAYS[1])
    by_key = {(o.feed, o.day): o for o in report.outcomes}
    for day in DAYS[:2]:
        failed = by_key[("pstn", day.isoformat())]
        assert failed.outcome == "failed" and "CallRecords.Read.All" in failed.error
        assert by_key[("directRouting", day.isoformat())].outcome == "succeeded"
    assert {d["id"]: d["_etag"] for d in stored_rows(settings)} == before
    state = new_collector(settings).ledger.day_states("pstn")[DAYS[0].isoformat()]
    assert state["status"] == "failed" and state["lastSuccessAt"] and "CallRecords.Read.All" in state["lastError"]


def test_an_invalid_json_page_fails_the_day_and_stores_none_of_it(settings, sim):
    sim.configure(faults=[{"kind": "invalid_json", "skip": 1000, "times": 1}])
    report = run_days(settings, [PSTN], DAYS[0], DAYS[0])
    outcome = report.outcomes[0]
    assert outcome.outcome == "failed" and "JSON" in outcome.error
    stored = stored_rows(settings)
    assert len(stored) == 1000  # the first, valid page only; nothing of the broken one
    assert all(d.get("id") and d.get("startDateTime") for d in stored)
    # The next run completes the day.
    again = run_days(settings, [PSTN], DAYS[0], DAYS[0])
    assert again.outcomes[0].outcome == "succeeded"
    assert_store_equals_truth(settings, sim, "pstn", [DAYS[0]])


def test_a_lease_held_by_another_run_skips_the_day(settings, sim):
    collector = new_collector(settings)
    assert collector.ledger.acquire("pstn", DAYS[0].isoformat(), "other-run", 600)
    outcome = collector.collect_day(PSTN, DAYS[0], "my-run")
    assert outcome.outcome == "skipped" and stored_rows(settings) == []
    assert not collector.ledger.acquire("pstn", DAYS[0].isoformat(), "third-run", 600)


def test_concurrent_subwindows_give_the_same_truth(stack, sim):
    settings = fresh_settings(stack, sim.url, SUBWINDOWS="4", FEEDS="pstn")
    report = run_days(settings, [PSTN], DAYS[0], DAYS[0])
    assert report.outcomes[0].outcome == "succeeded" and report.outcomes[0].windows == 4
    assert_store_equals_truth(settings, sim, "pstn", [DAYS[0]])
    urls = [e["path"] for e in sim.request_log()]
    assert sum(f"fromDateTime={DAYS[0]}T06:00:00Z," in u for u in urls) == 1  # the second quarter of the day


def test_a_day_collected_again_is_cut_to_its_shape_and_read_one_page_a_window(stack, sim):
    sim.configure(page_size=100)
    settings = fresh_settings(stack, sim.url, SUBWINDOWS="4", FEEDS="pstn")
    first = run_days(settings, [PSTN], DAYS[0], DAYS[0]).outcomes[0]
    assert (first.outcome, first.windows) == ("succeeded", 4) and first.pages > 25  # equal quarters, many pages
    ledger = new_collector(settings).ledger
    state = ledger.day_states("pstn")[DAYS[0].isoformat()]
    assert sum(state["shape"]["counts"]) == 2500 and state["shape"]["pageRows"] == 100
    assert "shape" not in ledger.runs("pstn", DAYS[0].isoformat())[0]  # the day's state only, not each run's

    again = run_days(settings, [PSTN], DAYS[0], DAYS[0]).outcomes[0]
    assert (again.new, again.changed, again.unchanged) == (0, 0, 2500)
    assert again.windows > 2500 // 100 and again.pages == again.windows  # every window one page
    starts = sorted(e["path"].split("fromDateTime=")[1][:20] for e in sim.request_log()[first.pages:]
                    if "$skip" not in e["path"])
    assert len(starts) == again.windows and starts[0] == f"{DAYS[0]}T00:00:00Z"

    # Late rows make some window two pages; none is lost.
    sim.configure(late_rows=[{"day": DAYS[0].isoformat(), "feed": "pstn", "count": 300, "after_requests": 0}])
    late = run_days(settings, [PSTN], DAYS[0], DAYS[0]).outcomes[0]
    assert (late.new, late.unchanged) == (300, 2500) and late.pages > late.windows
    assert_store_equals_truth(settings, sim, "pstn", [DAYS[0]])


def test_a_whole_day_setting_never_cuts_a_day_by_its_shape(stack, sim):
    settings = fresh_settings(stack, sim.url, SUBWINDOWS="1", FEEDS="pstn")
    outcomes = [run_days(settings, [PSTN], DAYS[0], DAYS[0]).outcomes[0] for _ in range(2)]
    assert [o.windows for o in outcomes] == [1, 1] and outcomes[1].unchanged == 2500


def test_berlin_yesterday_is_the_berlin_day_across_the_dst_change(stack, sim):
    settings = fresh_settings(stack, sim.url, FEEDS="pstn", TIME_ZONE="Europe/Berlin", RESCAN_DAYS="1",
                              COVERAGE_START="2026-03-29")
    now = dt.datetime(2026, 3, 30, 3, 45, tzinfo=dt.timezone.utc)  # after the 03:30 UTC occurrence; 05:45 in Berlin
    report = run_scheduled(settings, now=now)
    assert [o.day for o in report.outcomes] == ["2026-03-29"]
    window = day_window(dt.date(2026, 3, 29), "Europe/Berlin")
    assert (window.start.isoformat(), window.end.isoformat()) == ("2026-03-28T23:00:00+00:00",
                                                                   "2026-03-29T22:00:00+00:00")
    first = sim.request_log()[0]["path"]
    assert "fromDateTime=2026-03-28T23:00:00Z,toDateTime=2026-03-29T22:00:00Z" in first
    assert_store_equals_truth(settings, sim, "pstn", [dt.date(2026, 3, 29)])
    assert {d["day"] for d in stored_rows(settings)} == {"2026-03-28", "2026-03-29"}  # UTC-day partitions


def test_the_command_line_collects_a_range_through_the_same_path(stack, sim):
    settings = fresh_settings(stack, sim.url, FEEDS="pstn")
    env = {**os.environ, **stack.app_env(), "GRAPH_ENDPOINT": sim.url, "GRAPH_STATIC_TOKEN": TOKEN,
           "COSMOS_DATABASE": settings.cosmos_database, "ARCHIVE_CONTAINER": settings.archive_container,
           "FEEDS": "pstn", "GRAPH_FUNCTION_REQUESTS_PER_MINUTE": "6000", "GRAPH_APP_REQUESTS_PER_MINUTE": "6000",
           "GRAPH_TENANT_REQUESTS_PER_MINUTE": "6000"}
    done = subprocess.run([sys.executable, "-m", "shared.cli", "collect", "--from", DAYS[0].isoformat(),
                           "--to", DAYS[1].isoformat(), "--json"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["totals"]["rows"] == 5000 and report["totals"]["failed"] == 0
    assert_store_equals_truth(settings, sim, "pstn", DAYS[:2])
    bad = subprocess.run([sys.executable, "-m", "shared.cli", "collect", "--from", "2026-05-09", "--to", "2026-05-01"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "before" in bad.stderr


def test_the_timer_function_runs_the_scheduled_collection(stack, sim, monkeypatch):
    from devstack.localhost import FunctionIndex, run_timer
    from function_app import app
    from shared.instants import yesterday

    sim.configure(rows_per_day={"pstn": 1200, "directRouting": 100})
    day = yesterday("UTC")
    settings = fresh_settings(stack, sim.url, COVERAGE_START=day.isoformat(), RESCAN_DAYS="1")
    env = {**stack.app_env(), "GRAPH_ENDPOINT": sim.url, "GRAPH_STATIC_TOKEN": TOKEN,
           "COSMOS_DATABASE": settings.cosmos_database, "ARCHIVE_CONTAINER": settings.archive_container,
           "COVERAGE_START": day.isoformat(), "RESCAN_DAYS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run_timer(FunctionIndex.of(app).function("collect"))
    assert len(stored_rows(settings, "pstn")) == len(sim.truth("pstn", day, day + dt.timedelta(days=1)))
    assert len(stored_rows(settings, "directRouting")) > 0

    # Nothing is due again before the next occurrence; a backfill request makes the day due at this tick.
    from shared.stores import open_stores

    open_stores(settings).ledger.request_backfill("pstn", day, day)
    sim.configure(faults=[{"kind": "status", "status": 403, "times": 10}])
    with pytest.raises(Exception, match="failed"):
        run_timer(FunctionIndex.of(app).function("collect"))


def test_a_live_run_keeps_its_lease_and_a_dead_runs_lease_frees_quickly(stack, sim):
    settings = fresh_settings(stack, sim.url, FEEDS="pstn", LEASE_SECONDS="2")
    sim.configure(latency=0.4, page_size=500)  # five pages, about 2 s: longer than the lease itself
    collector, rival = new_collector(settings), new_collector(settings)
    seen = []

    def contend() -> None:
        time.sleep(1.3)  # after the first renewal point; the lease would have lapsed without renewals at 2 s
        seen.append(bool(rival.ledger.acquire("pstn", DAYS[0].isoformat(), "rival", 2)))
        time.sleep(1.0)
        seen.append(bool(rival.ledger.acquire("pstn", DAYS[0].isoformat(), "rival", 2)))

    import threading
    thread = threading.Thread(target=contend)
    thread.start()
    outcome = collector.collect_day(PSTN, DAYS[0], "live-run")
    thread.join()
    assert outcome.outcome == "succeeded" and outcome.duration_seconds > 2 and seen == [False, False]

    assert rival.ledger.acquire("pstn", DAYS[1].isoformat(), "dead-run", 2)  # a run that then dies
    assert not collector.ledger.acquire("pstn", DAYS[1].isoformat(), "next-run", 2)
    time.sleep(2.2)
    taken = collector.ledger.acquire("pstn", DAYS[1].isoformat(), "next-run", 2)
    assert taken and taken.took_over_from == "dead-run"  # the ledger says whose work it picked up


# --- rows far from their day ------------------------------------------------------------------------------------

def test_far_from_the_day_means_more_than_a_day_outside_its_window():
    window = Window(_at(D1, 0), _at(D1 + dt.timedelta(days=1), 0))
    assert FAR_FROM_DAY == dt.timedelta(days=1)
    for instant in (window.start, window.end, window.start - FAR_FROM_DAY, window.end + FAR_FROM_DAY,
                    _at(D1 - dt.timedelta(days=1), 3)):  # the evening before, a call that ran past midnight
        assert not far_from_window(instant, window), instant
    for instant in (window.start - FAR_FROM_DAY - dt.timedelta(microseconds=1),
                    window.end + FAR_FROM_DAY + dt.timedelta(seconds=1),
                    dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc),           # Graph's "never"
                    dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)):
        assert far_from_window(instant, window), instant


@pytest.mark.parametrize("subwindows", ["1", "4"])
def test_rows_far_from_their_day_are_kept_and_warned_about_once(stack, sim, caplog, subwindows):
    # The simulator sends no such row: a proxy in front of it sets two rows' start to Graph's "never" and to a
    # year far ahead (a clock bug), and a third to the evening before (near: no warning for it).
    proxy = GraphProxy(sim.url)
    try:
        def far_starts(document: dict) -> None:
            rows = document["value"]
            rows[0]["startDateTime"] = "0001-01-01T00:00:00Z"
            rows[1]["startDateTime"] = "2099-03-01T12:00:00Z"
            if subwindows == "1":  # in a sub-window it is a stray, rightly: see the fall-back tests
                rows[2]["startDateTime"] = f"{D1 - dt.timedelta(days=1)}T20:00:00Z"

        proxy.rewrite(first_page, far_starts)
        settings = fresh_settings(stack, proxy.url, FEEDS="pstn", SUBWINDOWS=subwindows)
        with caplog.at_level(logging.WARNING, logger="collector"):
            outcome = run_days(settings, [PSTN], D1, D1).outcomes[0]
    finally:
        proxy.close()
    assert outcome.outcome == "succeeded" and outcome.rows == 2500
    assert outcome.windows == int(subwindows)  # far rows are no sign of Graph ignoring the time of day
    stored = {d["id"]: d for d in stored_rows(settings)}
    assert len(stored) == 2500 and {"0001-01-01", "2099-03-01"} <= {d["day"] for d in stored.values()}
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "collect.farRows"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    record = warnings[0]
    assert record.levelno == logging.WARNING
    assert (record.feed, record.day, record.rows, record.timeField) == ("pstn", D1.isoformat(), 2, "startDateTime")
    assert (record.earliest, record.latest) == ("0001-01-01T00:00:00Z", "2099-03-01T12:00:00Z")
    assert record.runId == outcome.run_id and "0001-01-01T00:00:00Z" in record.getMessage()


def test_a_day_without_far_rows_does_not_warn(settings, sim, caplog):
    with caplog.at_level(logging.WARNING, logger="collector"):
        assert run_days(settings, [PSTN], D1, D1).outcomes[0].outcome == "succeeded"
    assert not [r for r in caplog.records if getattr(r, "event", None) == "collect.farRows"]
