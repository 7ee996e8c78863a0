"""The bad night, injected: Graph throttling storms and breakage, the stores going away, the collector killed.

Each scenario runs the collector through the fault, then one normal run, and checks that the store equals the
simulator's truth exactly (nothing lost, nothing duplicated) and that the ledger tells what happened. The last
test prints the table (also written to test-artifacts/fault-table.txt). The suite uses a stack of its own, with
data kept on disk, so stopping and starting its services neither loses data nor disturbs other tests.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devstack.graphsim.server import GraphSimulator
from devstack.stack import Stack
from shared.collect.run import DAYS_IN_FLIGHT, run_scheduled
from shared.stores.clients import blob_service, cosmos_client
from shared.stores.ledger import Ledger

from .collecting import TOKEN, fresh_settings, stored_rows, truth_for_days

ROOT = Path(__file__).resolve().parent.parent
DAYS = [dt.date(2026, 8, 3) + dt.timedelta(days=i) for i in range(3)]
NOW = dt.datetime.combine(DAYS[-1] + dt.timedelta(days=1), dt.time(4), dt.timezone.utc)
TABLE: list[dict] = []


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    state = tmp_path_factory.mktemp("faulty-stack")
    with Stack.on_free_ports(state_dir=state, persist=True) as stack:
        with GraphSimulator(seed=33, token=TOKEN, rows_per_day={"pstn": 2500, "directRouting": 250}) as sim:
            yield stack, sim


def settings_for(faulty, **extra):
    stack, sim = faulty
    sim.configure(faults=[], latency=0, late_rows=[], rate_limit=None)
    return fresh_settings(stack, sim.url, COVERAGE_START=DAYS[0].isoformat(), RESCAN_DAYS="0",
                          GRAPH_TIMEOUT_SECONDS="2", LEASE_SECONDS="3", **extra)


def verdict(fault: str, faulty, settings, faulty_report_outcomes: list[str], note: str = "") -> dict:
    """Compare the store with the truth after the normal run, record a row of the table, return it."""
    stack, sim = faulty
    lost = duplicated = extra = 0
    for feed in settings.feeds:
        docs = stored_rows(settings, feed)
        ids = [d["id"] for d in docs]
        truth = truth_for_days(sim, settings, feed, DAYS)
        duplicated += len(ids) - len(set(ids))
        lost += len(truth.keys() - set(ids))
        extra += len(set(ids) - truth.keys())
        changed = [d["id"] for d in docs if d["id"] in truth
                   and {k: v for k, v in d.items() if k in truth[d["id"]]} != truth[d["id"]]]
        lost += len(changed)  # a row stored with other content counts as lost too
    ledger = Ledger(cosmos_client(settings).get_database_client(settings.cosmos_database)
                    .get_container_client(settings.cosmos_runs_container))
    states = {(f, d): s for f in settings.feeds for d, s in ledger.day_states(f).items()}
    all_collected = all(states.get((f, d.isoformat()), {}).get("status") == "succeeded"
                        for f in settings.feeds for d in DAYS)
    row = {"fault": fault, "during the fault": ", ".join(sorted(set(faulty_report_outcomes))) or "-",
           "after the next run": "all days collected" if all_collected else "DAYS MISSING",
           "rows lost": lost, "duplicated": duplicated, "extra": extra, "note": note}
    TABLE.append(row)
    return row


def runs_of(settings) -> list[dict]:
    """Every run record of every feed: what the ledger tells about the fault."""
    ledger = Ledger(cosmos_client(settings).get_database_client(settings.cosmos_database)
                    .get_container_client(settings.cosmos_runs_container))
    return [run for feed in settings.feeds for run in ledger.runs(feed)]


def assert_clean(row: dict) -> None:
    assert (row["rows lost"], row["duplicated"], row["extra"]) == (0, 0, 0), row
    assert row["after the next run"] == "all days collected", row


# --- Graph --------------------------------------------------------------------------------------------------------
GRAPH_FAULTS = [
    ("429 storm with Retry-After", [{"kind": "status", "status": 429, "retry_after": 1, "times": 5}],
     lambda runs: sum(r["retries"] for r in runs) >= 5 and sum(r["throttled_seconds"] for r in runs) >= 5),
    ("bursts of 500 and 503", [{"kind": "status", "status": 500, "times": 3},
                               {"kind": "status", "status": 503, "times": 3, "skip": 1000}],
     lambda runs: sum(r["retries"] for r in runs) >= 6),
    ("reset connections", [{"kind": "drop", "times": 2}, {"kind": "drop", "times": 1, "skip": 2000, "partial": True}],
     lambda runs: sum(r["retries"] for r in runs) >= 3),
    ("truncated JSON page", [{"kind": "invalid_json", "times": 1, "skip": 1000}],
     lambda runs: any(r["outcome"] == "failed" and "JSON" in (r["error"] or "") for r in runs)),
    ("nextLink loop", [{"kind": "loop", "times": 1, "skip": 1000}],
     lambda runs: any(r["outcome"] == "failed" and "loop" in (r["error"] or "").lower() for r in runs)),
    ("token expires mid-paging (401)", [{"kind": "status", "status": 401, "times": 1, "skip": 1000}],
     lambda runs: all(r["outcome"] == "succeeded" for r in runs)),
    ("lost permission (403)", [{"kind": "status", "status": 403, "times": 1000}],
     lambda runs: any("CallRecords.Read.All" in (r["error"] or "") for r in runs)),
    ("page slower than the request timeout", [{"kind": "slow", "seconds": 3, "times": 1, "skip": 1000}],
     lambda runs: sum(r["retries"] for r in runs) >= 1),
]


@pytest.mark.parametrize("fault, rules, ledger_tells", GRAPH_FAULTS, ids=[f[0] for f in GRAPH_FAULTS])
def test_graph_fault(faulty, fault, rules, ledger_tells):
    stack, sim = faulty
    settings = settings_for(faulty)
    sim.configure(faults=rules)
    during = run_scheduled(settings, now=NOW)
    sim.configure(faults=[])
    after = run_scheduled(settings, now=NOW)
    assert not after.failed
    row = verdict(fault, faulty, settings, [o.outcome for o in during.outcomes])
    assert_clean(row)
    assert ledger_tells(runs_of(settings)), runs_of(settings)


# --- the stores ---------------------------------------------------------------------------------------------------
def _run_in_background(settings):
    box = {}

    def target():
        try:
            box["report"] = run_scheduled(settings, now=NOW)
        except Exception as exc:  # a run that dies is part of what is being tested
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _wait_for_requests(sim, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while sim.stats()["requests"] < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_cosmos_killed_mid_run_and_started_again(faulty):
    stack, sim = faulty
    settings = settings_for(faulty)
    sim.configure(latency=0.2)
    sim.reset()
    thread, box = _run_in_background(settings)
    _wait_for_requests(sim, 4)
    stack.service("cosmos").process.send_signal(signal.SIGKILL)
    stack.service("cosmos").process.wait(10)
    time.sleep(1.0)
    stack.restart("cosmos")
    thread.join(180)
    sim.configure(latency=0)
    time.sleep(3.5)  # leases of days the interrupted run held lapse
    after = run_scheduled(settings, now=NOW)
    assert not after.failed, [o.error for o in after.failed]
    during = [o.outcome for o in box["report"].outcomes] if "report" in box else ["run died: " + type(box["error"]).__name__]
    assert_clean(verdict("Cosmos DB killed mid-run, started again", faulty, settings, during))


def test_azurite_down_at_the_start(faulty):
    stack, sim = faulty
    settings = settings_for(faulty)
    stack.service("azurite").stop()
    try:
        during = run_scheduled(settings, now=NOW)
    finally:
        stack.restart("azurite")
    # The first days (DAYS_IN_FLIGHT of each feed: they run side by side) fail with the reason; the run stops
    # there instead of failing every day the same way.
    assert {o.outcome for o in during.outcomes} == {"failed"} and during.deferred
    assert max(Counter(o.feed for o in during.outcomes).values()) <= DAYS_IN_FLIGHT
    assert all(o.error.startswith("store unreachable: ") for o in during.outcomes)
    assert stored_rows(settings) == []  # archive first: nothing stored that is not archived
    after = run_scheduled(settings, now=NOW)
    assert not after.failed
    assert_clean(verdict("Azurite down at the start", faulty, settings, [o.outcome for o in during.outcomes]))


def test_azurite_down_mid_run(faulty):
    stack, sim = faulty
    settings = settings_for(faulty)
    sim.configure(latency=0.2)
    sim.reset()
    thread, box = _run_in_background(settings)
    _wait_for_requests(sim, 4)
    stack.service("azurite").stop()
    thread.join(180)
    stack.restart("azurite")
    sim.configure(latency=0)
    during = box["report"]
    assert during.failed  # the days after the outage began could not be archived
    after = run_scheduled(settings, now=NOW)
    assert not after.failed
    assert_clean(verdict("Azurite down mid-run", faulty, settings, [o.outcome for o in during.outcomes]))


# --- the process --------------------------------------------------------------------------------------------------
def test_collector_killed_with_sigkill_mid_day_then_run_again(faulty):
    stack, sim = faulty
    settings = settings_for(faulty)
    sim.configure(latency=0.3)
    sim.reset()
    env = {**os.environ, **stack.app_env(), "GRAPH_ENDPOINT": sim.url, "GRAPH_STATIC_TOKEN": TOKEN,
           "COSMOS_DATABASE": settings.cosmos_database, "ARCHIVE_CONTAINER": settings.archive_container,
           "LEASE_SECONDS": "3", "GRAPH_FUNCTION_REQUESTS_PER_MINUTE": "12000",
           "GRAPH_APP_REQUESTS_PER_MINUTE": "12000", "GRAPH_TENANT_REQUESTS_PER_MINUTE": "12000"}
    process = subprocess.Popen([sys.executable, "-m", "shared.cli", "collect", "--from", DAYS[0].isoformat(),
                                "--to", DAYS[-1].isoformat(), "--quiet"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_requests(sim, 3)  # the first day is part-way through its pages
    deadline = time.monotonic() + 10
    while not stored_rows(settings, "pstn") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    stored = len(stored_rows(settings, "pstn"))
    assert 0 < stored < len(truth_for_days(sim, settings, "pstn", DAYS))  # killed part-way, not before or after
    sim.configure(latency=0)
    time.sleep(3.5)  # the dead run's lease lapses
    after = run_scheduled(settings, now=NOW)
    assert not after.failed
    takeovers = [o for o in after.outcomes if o.took_over_from]
    assert takeovers, "the ledger should say whose day was taken over"
    assert_clean(verdict("collector killed (SIGKILL) mid-day", faulty, settings, ["killed"],
                         note=f"next run took over {len(takeovers)} day(s) from the dead run"))


# --- the table ----------------------------------------------------------------------------------------------------
def test_zz_fault_table(capsys):
    """Printed with -s (and always written to test-artifacts/fault-table.txt)."""
    assert len(TABLE) == len(GRAPH_FAULTS) + 4, "every scenario adds its row"
    columns = ["fault", "during the fault", "after the next run", "rows lost", "duplicated", "note"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in TABLE)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns), "-+-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in TABLE]
    text = "\n".join(lines)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "fault-table.txt").write_text(text + "\n")
    with capsys.disabled():
        print("\n" + text)
    assert all(r["rows lost"] == 0 and r["duplicated"] == 0 for r in TABLE)
