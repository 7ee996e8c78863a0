"""Reliability and security across the whole run: logs hold no personal data or credentials, and two collectors
started at once on the same days end with the truth (issue 8)."""
from __future__ import annotations

import datetime as dt
import logging
import threading

import pytest

from devstack.graphsim.server import GraphSimulator
from devstack.stack import AZURITE_KEY, COSMOS_EMULATOR_KEY
from shared.collect.run import build_collector, run_days
from shared.config.feeds import FEEDS

from .collecting import TOKEN, assert_store_equals_truth, fresh_settings, truth_for_days

D1 = dt.date(2026, 7, 6)
DAYS = [D1 + dt.timedelta(days=i) for i in range(3)]


@pytest.fixture
def sim():
    with GraphSimulator(seed=21, token=TOKEN, rows_per_day={"pstn": 1500, "directRouting": 150}) as simulator:
        yield simulator


def test_logs_of_a_troubled_run_hold_no_phone_number_token_or_key(stack, sim, caplog):
    settings = fresh_settings(stack, sim.url, GRAPH_API_VERSION="beta")
    sim.configure(faults=[
        {"kind": "status", "status": 429, "retry_after": 1, "times": 1, "skip": 1000},
        {"kind": "status", "status": 401, "times": 1, "skip": 0},
        {"kind": "invalid_json", "times": 1, "skip": 1000, "feed": "directRouting"},
        {"kind": "status", "status": 403, "times": 1, "feed": "directRouting", "after": 2},
        {"kind": "drop", "times": 1, "skip": 2000},
    ])
    caplog.set_level(logging.DEBUG)  # everything, the SDKs' request logging included
    run_days(settings, [FEEDS["pstn"], FEEDS["directRouting"]], DAYS[0], DAYS[1])
    text = "\n".join(caplog.messages) + "\n".join(r.exc_text or "" for r in caplog.records)
    assert len(caplog.records) > 20 and "429" in text and "403" in text  # the faults did get logged

    rows = [row for feed in ("pstn", "directRouting")
            for row in truth_for_days(sim, settings, feed, DAYS[:2]).values()]
    numbers = {row[f] for row in rows for f in ("callerNumber", "calleeNumber") if row.get(f)}
    addresses = {row[f] for row in rows for f in ("clientPublicIpV4Address", "clientPublicIpV6Address",
                                                   "clientLocalIpV4Address", "clientLocalIpV6Address") if row.get(f)}
    assert numbers and addresses
    leaked = [n for n in numbers | addresses if n in text]
    assert not leaked, leaked[:5]
    for secret in (TOKEN, COSMOS_EMULATOR_KEY, AZURITE_KEY, f"Bearer {TOKEN}"):
        assert secret not in text


def test_two_collectors_started_at_once_on_the_same_days_end_with_the_truth(stack, sim):
    settings = fresh_settings(stack, sim.url, FEEDS="pstn")
    sim.configure(latency=0.05)
    collectors = [build_collector(settings), build_collector(settings)]
    start = threading.Barrier(2)
    reports, errors = [None, None], []

    def run(i: int) -> None:
        try:
            start.wait()
            reports[i] = run_days(settings, [FEEDS["pstn"]], DAYS[0], DAYS[-1], collector=collectors[i])
        except Exception as exc:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for collector in collectors:
        collector.close()
    assert not errors and all(reports)
    assert_store_equals_truth(settings, sim, "pstn", DAYS)
    outcomes = [(o.day, o.outcome) for r in reports for o in r.outcomes]
    assert all(outcome in ("succeeded", "skipped") for _, outcome in outcomes)
    for day in DAYS:  # every day was collected by at least one of them
        assert (day.isoformat(), "succeeded") in outcomes
    states = build_collector(settings).ledger.day_states("pstn")
    assert all(states[d.isoformat()]["status"] == "succeeded" and states[d.isoformat()]["lease"] is None
               for d in DAYS)
