"""Operations: status, the dashboard in real Chromium, backfill requests, replay, structured logs (issue 5)."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from devstack.graphsim.server import GraphSimulator
from devstack.localhost import FunctionIndex
from shared.collect.run import build_collector, run_days, run_scheduled, scheduled_work
from shared.config.feeds import FEEDS
from shared.stores.rows import COSMOS_SYSTEM_FIELDS
from shared.instants import yesterday

from .collecting import TOKEN, assert_unchanged, delete_day, fresh_settings, served_app, snapshot, stored_rows

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
LAST = yesterday("UTC")
DAYS = [LAST - dt.timedelta(days=n) for n in range(5, -1, -1)]   # the last six days, oldest first
FAILED_DAY = DAYS[0]


@pytest.fixture(scope="module")
def ops(stack):
    """Six recent days collected by the scheduled path with the oldest one failing, and the app on a free port."""
    with GraphSimulator(seed=9, token=TOKEN, rows_per_day={"pstn": 300, "directRouting": 30}) as sim:
        # A failed day waits for its retry delay: the scheduled run below leaves it failed.
        settings = fresh_settings(stack, sim.url, FEEDS="pstn", COVERAGE_START=DAYS[0].isoformat(),
                                  RESCAN_DAYS="2", FAILED_RETRY_MINUTES="600")
        sim.configure(faults=[{"kind": "status", "status": 403, "times": 1}])
        failed = run_days(settings, [FEEDS["pstn"]], DAYS[0], DAYS[0])
        report = run_scheduled(settings)
        assert [o.outcome for o in failed.outcomes + report.outcomes] == ["failed"] + ["succeeded"] * 5
        with served_app(settings, sim) as served:
            yield served


def status(ops, **params):
    r = requests.get(f"{ops['api']}/status", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


# --- the dashboard in real Chromium -----------------------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium(*args: str) -> tuple[str, list[str]]:
    """Chromium's output and the page's console lines (where it reports what the page's policy refused)."""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed (make test installs it)"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                               "--v=0", *args], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if "CONSOLE" in line]


class DrawnDays(HTMLParser):
    """The day bars the page's script drew, from the DOM Chromium serialised after running it."""

    def __init__(self):
        super().__init__()
        self.days: dict[str, str] = {}
        self.drawn = False
        self.failed_rows: list[str] = []
        self.run_rows = 0
        self._in_runs = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._in_runs = a.get("id") == "runs"
        if tag == "tr" and self._in_runs:
            self.run_rows += 1
        if tag == "rect" and "day" in (a.get("class") or "").split():
            self.days[a["data-day"]] = a["data-status"]
        if tag == "body" and a.get("data-drawn") == "true":
            self.drawn = True
        if tag == "tr" and a.get("class") == "failed-day":
            self.failed_rows.append(a["data-day"])


def drawn(ops, name: str, days: int) -> DrawnDays:
    url = f"{ops['api']}/dashboard?days={days}"
    dom, console = chromium("--virtual-time-budget=5000", "--dump-dom", url)
    # The page's policy allows its script by hash: a refused script (or style) would be reported here, and the
    # DOM below would lack what the script draws.
    refused = [line for line in console if "Content Security Policy" in line]
    assert not refused, refused
    ARTIFACTS.mkdir(exist_ok=True)
    chromium("--window-size=1100,700", f"--screenshot={ARTIFACTS / (name + '.png')}", url)
    assert (ARTIFACTS / f"{name}.png").stat().st_size > 5000
    parser = DrawnDays()
    parser.feed(dom)
    assert parser.drawn and parser.run_rows > 1, "the page's script did not run to its end"
    return parser


# Acceptance: after one failed day both status and dashboard show it with its error; after a backfill is worked
# off both show it collected. Kept in one test because the two halves are one story on one database.
def test_a_failed_day_shows_in_status_and_dashboard_until_a_backfill_collects_it(ops):
    before = status(ops)
    feed = before["feeds"]["pstn"]
    assert feed["failed"][0]["day"] == FAILED_DAY.isoformat() and "CallRecords.Read.All" in feed["failed"][0]["error"]
    assert feed["gaps"] == [FAILED_DAY.isoformat()] and feed["daysCovered"] == 5
    assert feed["lastRun"]["outcome"] in ("succeeded", "failed") and before["nextRun"] > before["generatedAt"]
    assert before["settings"]["COSMOS_KEY"] == "***" and before["healthy"] is False

    page = drawn(ops, "dashboard-failed-day", days=10)
    assert page.drawn and len(page.days) == len(DAYS)  # the coverage start caps the 10-day window at 6 days
    assert page.days[FAILED_DAY.isoformat()] == "failed" and page.failed_rows == [FAILED_DAY.isoformat()]
    assert sum(1 for s in page.days.values() if s == "succeeded") == 5

    r = requests.post(f"{ops['api']}/ops/collect", params={"feed": "pstn", "from": FAILED_DAY.isoformat()})
    assert r.status_code == 202 and r.headers["Location"].endswith("/api/status")
    request_id = r.json()["requests"][0]["id"]
    assert status(ops)["feeds"]["pstn"]["backfills"][-1] == {**status(ops)["feeds"]["pstn"]["backfills"][-1],
                                                              "id": request_id, "status": "pending"}
    report = run_scheduled(ops["settings"])  # the next timer run works it off
    assert any(o.day == FAILED_DAY.isoformat() and o.outcome == "succeeded" for o in report.outcomes)

    after = status(ops)["feeds"]["pstn"]
    assert after["failed"] == [] and after["gaps"] == [] and after["daysCovered"] == 6
    assert after["backfills"][-1]["status"] == "done"
    page = drawn(ops, "dashboard-after-backfill", days=10)
    assert page.days[FAILED_DAY.isoformat()] == "succeeded" and page.failed_rows == []


def test_a_backfill_reaches_days_the_work_list_would_not(ops):
    settings = ops["settings"]
    collector = build_collector(settings)
    try:
        early = DAYS[0] - dt.timedelta(days=20)  # before the coverage start, so never in the normal work list
        assert early not in {d for _, d in scheduled_work(settings, collector.ledger)}
        collector.ledger.request_backfill("pstn", early, early)
        assert early in {d for _, d in scheduled_work(settings, collector.ledger)}
    finally:
        collector.close()


# --- replay -----------------------------------------------------------------------------------------------------
def test_replay_rebuilds_exactly_the_documents_of_a_deleted_day(ops):
    settings, sim, day = ops["settings"], ops["sim"], DAYS[2]
    # History worth replaying: a second run of the day that adds late rows.
    sim.configure(late_rows=[{"day": day.isoformat(), "feed": "pstn", "count": 12, "after_requests": 0}])
    run_days(settings, [FEEDS["pstn"]], day, day)

    def documents():
        return {d["id"]: {k: v for k, v in d.items() if k not in COSMOS_SYSTEM_FIELDS}
                for d in stored_rows(settings) if d["day"] == day.isoformat()}

    try:
        before = documents()
        assert len(before) == 312
        assert delete_day(settings, day.isoformat()) == 312 and documents() == {}
        r = requests.post(f"{ops['api']}/ops/replay", params={"feed": "pstn", "day": day.isoformat()})
        assert r.status_code == 200, r.text
        assert r.json()["new"] == 312 and len(r.json()["runs"]) >= 2
        assert documents() == before
        again = requests.post(f"{ops['api']}/ops/replay", params={"feed": "pstn", "day": day.isoformat()}).json()
        assert again["new"] == 0 and again["changed"] == 0  # a replay over intact data writes nothing
    finally:
        sim.configure(late_rows=[])


# --- admin routes ------------------------------------------------------------------------------------------------
def test_operator_routes_declare_admin_and_the_rest_function():
    from function_app import app

    levels = {r.name: (r.auth_level, sorted(r.methods)) for r in FunctionIndex.of(app).routes}
    assert levels["ops_collect"] == ("admin", ["POST"]) and levels["ops_replay"] == ("admin", ["POST"])
    assert levels["status"][0] == levels["dashboard"][0] == "function"


@pytest.mark.parametrize("route, params, reason", [
    ("ops/collect", {"feed": "pstn"}, "from is required"),
    ("ops/collect", {"feed": "pstn", "from": "yesterday"}, "from must be a date"),
    ("ops/collect", {"feed": "sms", "from": "2026-01-01"}, "feed must be one of"),
    ("ops/collect", {"feed": "directRouting", "from": "2026-01-01"}, "not enabled"),
    ("ops/collect", {"feed": "pstn", "from": "2026-02-01", "to": "2026-01-01"}, "before"),
    ("ops/collect", {"feed": "pstn", "from": "2099-01-01"}, "yesterday"),
    ("ops/collect", {"feed": "pstn", "from": "2020-01-01", "to": "2025-01-01"}, "at most"),
    ("ops/collect", {"feed": "pstn", "from": "2026-01-01", "force": "yes"}, "unknown parameter"),
    ("ops/replay", {"day": "2026-01-01"}, "feed is required"),
    ("ops/replay", {"feed": "pstn"}, "day is required"),
    ("ops/replay", {"feed": "pstn", "day": "2026-02-30"}, "day must be a date"),
    ("ops/replay", {"feed": "pstn", "day": "2019-01-01"}, "nothing archived"),
])
def test_bad_operator_parameters_answer_400_with_the_reason(ops, route, params, reason):
    r = requests.post(f"{ops['api']}/{route}", params=params)
    assert r.status_code == 400 and reason in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("route", ["status", "dashboard"])
@pytest.mark.parametrize("params", [{"days": "0"}, {"days": "many"}, {"days": "9999"}, {"verbose": "1"},
                                    {"days": "²"}, {"days": "１２"}])
def test_bad_status_parameters_answer_400(ops, route, params):
    r = requests.get(f"{ops['api']}/{route}", params=params)
    assert r.status_code == 400 and r.json()["error"]["target"] == next(iter(params)), r.text


# --- the command line ---------------------------------------------------------------------------------------------
def test_command_line_status_and_replay(ops):
    env = {**os.environ}
    done = subprocess.run([sys.executable, "-m", "shared.cli", "status", "--days", "10"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "pstn: 6 of 6 days collected" in done.stdout, done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-m", "shared.cli", "replay", "--feed", "pstn", "--day",
                           DAYS[3].isoformat(), "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and '"unchanged": 300' in done.stdout, done.stderr


# --- observability ------------------------------------------------------------------------------------------------
def test_each_day_logs_one_structured_record_and_a_failure_one_clear_line(ops, caplog):
    settings, sim = ops["settings"], ops["sim"]
    caplog.set_level(logging.INFO, logger="collector")
    sim.configure(faults=[{"kind": "status", "status": 403, "times": 1}])
    run_days(settings, [FEEDS["pstn"]], DAYS[4], DAYS[5])
    records = [r for r in caplog.records if getattr(r, "event", None) == "collect.day"]
    assert [(r.day, r.outcome) for r in records] == [(DAYS[4].isoformat(), "failed"),
                                                     (DAYS[5].isoformat(), "succeeded")]
    ok = records[1]
    for field in ("feed", "day", "runId", "pages", "rows", "new", "changed", "unchanged", "retries",
                  "throttledSeconds", "durationSeconds"):
        assert hasattr(ok, field), field
    failure = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "collector"]
    assert len(failure) == 1 and "CallRecords.Read.All" in failure[0].getMessage()
    run_days(settings, [FEEDS["pstn"]], DAYS[4], DAYS[4])  # leave the day collected for the other tests


# --- looking before the coverage start is fixed --------------------------------------------------------------------
# Last in the module: serving this database points the app (which reads os.environ on each request) away from
# the one of `ops`, so no test of `ops` may run after `unfixed` is set up.
UNFIXED_DAYS = [dt.date(2026, 4, 7), dt.date(2026, 4, 8)]


@pytest.fixture(scope="module")
def unfixed(stack):
    """Two days of both feeds collected day by day (not by the scheduled path, which fixes the coverage start)
    into a fresh database with no COVERAGE_START, as deployed by default; the app served on a free port."""
    with GraphSimulator(seed=8, token=TOKEN, rows_per_day={"pstn": 30, "directRouting": 12}) as sim:
        settings = fresh_settings(stack, sim.url)
        report = run_days(settings, [FEEDS["pstn"], FEEDS["directRouting"]], UNFIXED_DAYS[0], UNFIXED_DAYS[-1])
        assert not report.failed
        with served_app(settings, sim) as served:
            yield served


def test_status_and_dashboard_do_not_fix_the_coverage_start(unfixed):
    """Looking at the status or the dashboard writes nothing, the feed's `meta` document included: with no
    COVERAGE_START the first collector run fixes the start (30 days before it), and a look must not fix it
    on the day someone looked. Status shows the start a first run would fix today."""
    before = snapshot(unfixed["settings"])
    for route in ("status", "dashboard"):
        assert requests.get(f"{unfixed['api']}/{route}", timeout=60).status_code == 200
    assert_unchanged(before, snapshot(unfixed["settings"]))
    assert not [d for d in before["runs"] if json.loads(d)["id"] == "meta"]  # no collector run fixed it yet
    body = requests.get(f"{unfixed['api']}/status", timeout=60).json()
    today = dt.date.fromisoformat(body["generatedAt"][:10])  # the server's today (UTC, the fixture's TIME_ZONE)
    for feed in body["feeds"].values():
        assert feed["coverageStart"] == (today - dt.timedelta(days=30)).isoformat()
