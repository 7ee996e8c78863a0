"""Graph's limits per scope, end to end (issue 14): the collector against the simulator enforcing the documented
scopes on a time scale. Two feeds at once share the app's limit; a 429 storm of one function's scope slows only
that feed."""
from __future__ import annotations

import datetime as dt

from devstack.graphsim.server import GraphSimulator
from shared.collect.run import run_days
from shared.config.feeds import FEEDS

from .collecting import TOKEN, assert_store_equals_truth, fresh_settings

D1 = dt.date(2026, 6, 1)
DAYS = [D1 + dt.timedelta(days=n) for n in range(3)]
BOTH = [FEEDS["pstn"], FEEDS["directRouting"]]


def _scoped(stack, sim, scale: float, function: float, app: float, **overrides):
    return fresh_settings(stack, sim.url, FEEDS="pstn,directRouting", GRAPH_FUNCTION_REQUESTS_PER_MINUTE=str(function * scale),
                          GRAPH_APP_REQUESTS_PER_MINUTE=str(app * scale),
                          GRAPH_TENANT_REQUESTS_PER_MINUTE=str(950 * scale), **overrides)


def _function(stats: dict, name: str) -> dict:
    return next(v for k, v in stats["limits"]["functions"].items() if k.lower() == name.lower())


def _refused(stats: dict, scope_prefix: str) -> int:
    return sum(v["refused"] for k, v in stats["limits"]["scopes"].items() if k.startswith(scope_prefix))


def test_two_feeds_at_once_stay_under_the_apps_limit(stack):
    scale = 50
    with GraphSimulator(seed=31, token=TOKEN, rows_per_day={"pstn": 200, "directRouting": 200}, page_size=5) as sim:
        # The app's scope (60 a minute) is tighter than two functions (2 x 50): only the client's app limit keeps
        # the two feeds, each allowed 47 a minute by its own, from 429s.
        sim.configure(limits={"per_function": "50/60", "per_app": "60/60"}, time_scale=scale)
        settings = _scoped(stack, sim, scale, function=47, app=57)
        report = run_days(settings, BOTH, DAYS[0], DAYS[-1])
        stats = sim.stats()
        assert not report.failed, [o.error for o in report.failed]
        pstn, dr = _function(stats, "getPstnCalls"), _function(stats, "getDirectRoutingCalls")
        admitted = pstn["admitted"] + dr["admitted"]
        assert admitted >= 2 * 3 * 40
        assert _refused(stats, "") <= 0.01 * admitted + 1, stats["limits"]["scopes"]
        # Side by side, not one after the other: each function's requests span most of the other's.
        overlap = min(pstn["last_admitted"], dr["last_admitted"]) - max(pstn["first_admitted"], dr["first_admitted"])
        assert overlap > 0.5 * min(pstn["last_admitted"] - pstn["first_admitted"],
                                   dr["last_admitted"] - dr["first_admitted"])
        for feed in ("pstn", "directRouting"):
            assert_store_equals_truth(settings, sim, feed, DAYS)


def test_a_429_storm_in_one_functions_scope_slows_only_that_feed(stack):
    scale = 20
    with GraphSimulator(seed=32, token=TOKEN, rows_per_day={"pstn": 60, "directRouting": 300}, page_size=5) as sim:
        # getPstnCalls is allowed a tenth of its documented limit, so the client (at 47 a minute) meets a storm of
        # 429s naming its scope; getDirectRoutingCalls keeps the documented 50.
        sim.configure(limits={"per_function": {"getPstnCalls": "5/60", "*": "50/60"}}, time_scale=scale)
        settings = _scoped(stack, sim, scale, function=47, app=190, GRAPH_MAX_RETRIES="20")
        report = run_days(settings, BOTH, DAYS[0], DAYS[-1])
        stats = sim.stats()
        assert not report.failed, [o.error for o in report.failed]
        assert _refused(stats, "Collection/getPstnCalls") > 0
        assert _refused(stats, "Collection/getDirectRoutingCalls") == 0
        dr = _function(stats, "getDirectRoutingCalls")
        span = dr["last_admitted"] - dr["first_admitted"]
        rate = (dr["admitted"] - 1) / span * 60 / scale
        assert rate >= 0.75 * 47, f"Direct Routing got {rate:.1f} requests a (scaled) minute while PSTN was throttled"
        for feed in ("pstn", "directRouting"):
            assert_store_equals_truth(settings, sim, feed, DAYS)
