"""Daily usage summaries equal a plain recomputation from the stored rows, and follow the rows."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest

from devstack.graphsim.server import GraphSimulator
from shared.collect.run import run_days
from shared.stores.clients import cosmos_client
from shared.config.feeds import FEEDS
from shared.derive.summaries import summarize

from .collecting import TOKEN, fresh_settings, stored_rows

D1 = dt.date(2026, 6, 1)


def plain_recomputation(rows, feed):
    """Written independently of shared.summaries: group with a dict, sum with integers of cents where possible."""
    groups = defaultdict(lambda: {"calls": 0, "seconds": 0, "charge": 0.0, "connectionCharge": 0.0})
    for r in rows:
        key = (r["day"], feed, r.get("userId"), r.get("userPrincipalName"), r.get("callType"),
               r.get("destinationContext"), r.get("currency"))
        g = groups[key]
        g["calls"] += 1
        g["seconds"] += r.get("duration") or 0
        g["charge"] += r.get("charge") or 0
        g["connectionCharge"] += r.get("connectionCharge") or 0
    return {k: (g["calls"], round(g["seconds"] / 60, 4), round(g["charge"], 6), round(g["connectionCharge"], 6))
            for k, g in groups.items()}


def stored_summaries(settings):
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container("dailyUsage"))
    return list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))


def as_map(summaries):
    return {(s["day"], s["feed"], s["userId"], s["userPrincipalName"], s["callType"], s["destinationContext"],
             s["currency"]): (s["calls"], s["minutes"], round(s["charge"], 6), round(s["connectionCharge"], 6))
            for s in summaries}


@pytest.fixture
def sim():
    with GraphSimulator(seed=11, rows_per_day={"pstn": 1500, "directRouting": 200}, token=TOKEN) as simulator:
        yield simulator


def test_summaries_equal_a_plain_recomputation_and_follow_late_rows(stack, sim):
    settings = fresh_settings(stack, sim.url)
    run_days(settings, [FEEDS["pstn"], FEEDS["directRouting"]], D1, D1 + dt.timedelta(days=1))
    expected = {**plain_recomputation(stored_rows(settings, "pstn"), "pstn"),
                **plain_recomputation(stored_rows(settings, "directRouting"), "directRouting")}
    summaries = stored_summaries(settings)
    assert as_map(summaries) == expected
    assert sum(s["calls"] for s in summaries) == 2 * 1500 + 2 * 200

    etags = {s["id"]: s["_etag"] for s in summaries}
    run_days(settings, [FEEDS["pstn"]], D1, D1)  # unchanged: summaries are not rewritten
    assert {s["id"]: s["_etag"] for s in stored_summaries(settings)} == etags

    sim.configure(late_rows=[{"day": D1.isoformat(), "feed": "pstn", "count": 25, "after_requests": 0}])
    run_days(settings, [FEEDS["pstn"]], D1, D1)
    pstn = plain_recomputation(stored_rows(settings, "pstn"), "pstn")
    got = {k: v for k, v in as_map(stored_summaries(settings)).items() if k[1] == "pstn"}
    assert got == pstn
    assert sum(v[0] for k, v in got.items() if k[0] == D1.isoformat()) == 1525


def test_summarize_keeps_money_exact_and_groups_nulls():
    rows = [{"userId": "u", "callType": "user_out", "currency": "USD", "duration": 90, "charge": 0.1},
            {"userId": "u", "callType": "user_out", "currency": "USD", "duration": 30, "charge": 0.2},
            {"userId": "u", "callType": "user_in", "duration": 60}]
    out = {d["callType"]: d for d in summarize("pstn", "2026-06-01", rows)}
    assert out["user_out"]["charge"] == 0.3 and out["user_out"]["minutes"] == 2 and out["user_out"]["calls"] == 2
    assert out["user_in"]["currency"] is None and out["user_in"]["charge"] == 0
    assert len({d["id"] for d in out.values()}) == 2
