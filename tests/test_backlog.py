"""A backlog drains by itself (issue 14): the collect timer ticks at its schedule on the local host, the Graph
simulator enforces its documented limits on a time scale, and a backfill larger than one run's budget is
collected run after run, each day once (leases keep concurrent runs apart), with no operator step."""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pytest

from devstack.graphsim.server import GraphSimulator
from devstack.localhost import TimerScheduler
from shared.collect.run import run_days, scheduled_work
from shared.config.feeds import FEEDS
from shared.instants import yesterday
from shared.stores import open_stores

from .collecting import TOKEN, assert_store_equals_truth, fresh_settings, served_app

# The simulator's minutes pass SCALE times faster; the client's limits are raised by the same factor.
SCALE = 100
LAST = yesterday("UTC")
BACKFILL = [LAST - dt.timedelta(days=n) for n in range(14, 2, -1)]   # twelve days, oldest first


def _limited_settings(stack, sim, **overrides):
    return fresh_settings(stack, sim.url, GRAPH_FUNCTION_REQUESTS_PER_MINUTE=str(47 * SCALE),
                          GRAPH_APP_REQUESTS_PER_MINUTE=str(190 * SCALE),
                          GRAPH_TENANT_REQUESTS_PER_MINUTE=str(950 * SCALE), **overrides)


def _wait_until_nothing_due(settings, timeout: float) -> None:
    ledger = open_stores(settings).ledger
    deadline = time.monotonic() + timeout
    while scheduled_work(settings, ledger):
        assert time.monotonic() < deadline, f"work still due after {timeout} s: {scheduled_work(settings, ledger)}"
        time.sleep(0.5)


def test_a_backfill_larger_than_one_run_drains_by_itself_across_ticks(stack):
    with GraphSimulator(seed=21, token=TOKEN, rows_per_day={"pstn": 60, "directRouting": 0}, page_size=5) as sim:
        sim.configure(limits="documented", time_scale=SCALE)
        settings = _limited_settings(stack, sim, FEEDS="pstn", COVERAGE_START=LAST.isoformat(), RESCAN_DAYS="0",
                                     TIME_BUDGET_SECONDS="1", COLLECT_TIMER_SCHEDULE="* * * * * *",
                                     LEASE_SECONDS="30")
        feed = FEEDS["pstn"]
        assert not run_days(settings, [feed], LAST, LAST).failed
        ledger = open_stores(settings).ledger
        request = ledger.request_backfill("pstn", BACKFILL[0], BACKFILL[-1])
        assert [d for _, d in scheduled_work(settings, ledger)] == BACKFILL
        with served_app(settings, sim):
            # Two schedulers: two instances of the app ticking at once; only the leases keep them apart.
            timers = [TimerScheduler(__import__("function_app").app).start() for _ in range(2)]
            try:
                _wait_until_nothing_due(settings, timeout=120)
                settled_at = sum(t.invocations["collect"] for t in timers)
                runs_when_drained = ledger.runs("pstn")
                time.sleep(2.5)   # more ticks, with nothing due: they return at once and record nothing
            finally:
                for timer in timers:
                    timer.stop()
        assert sum(t.invocations["collect"] for t in timers) > settled_at
        runs = ledger.runs("pstn")
        assert len(runs) == len(runs_when_drained), "a tick with nothing due recorded a run"

    backfill_runs = [r for r in runs if r["day"] in {d.isoformat() for d in BACKFILL}]
    succeeded = Counter(r["day"] for r in backfill_runs if r["outcome"] == "succeeded")
    assert succeeded == Counter({d.isoformat(): 1 for d in BACKFILL}), "each day collected exactly once"
    run_ids = {r["run_id"] for r in backfill_runs if r["outcome"] == "succeeded"}
    assert len(run_ids) >= 3, f"a 1 s budget cannot hold twelve days at the limits, yet {len(run_ids)} run(s) did"
    assert_store_equals_truth(settings, sim, "pstn", BACKFILL + [LAST])
    assert [b["status"] for b in ledger.backfills("pstn") if b["id"] == request["id"]] == ["done"]
    stats = sim.stats()
    refused, admitted = _throttle_counts(stats)
    assert refused <= 0.01 * admitted + 1, f"{refused} 429s for {admitted} requests"


def _throttle_counts(stats: dict) -> tuple[int, int]:
    scopes = stats["limits"]["scopes"]
    return (sum(s["refused"] for s in scopes.values()), max(s["admitted"] for s in scopes.values()))
