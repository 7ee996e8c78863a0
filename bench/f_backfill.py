"""(f) A year's backfill at Graph's documented limits, on a time scale, drained by the timer alone.

    .venv/bin/python -m bench.f_backfill [--days 365] [--pages 100] [--scale 100] [--feeds pstn]

The Graph simulator enforces the documented scopes (50 requests / 60 s per function, 200 per app, 1,000 per
tenant) with its minutes passing SCALE times faster; the client's limits are the defaults times SCALE, the run
budget TIME_BUDGET_SECONDS / SCALE. The app's own timer function is ticked every second by the local host's
scheduler (the real one ticks every minute: at SCALE 100 that is 0.6 s, so one second between runs is the
worse case), starting from a coverage start DAYS ago and nothing stored: a first run that is a year. Nobody
does anything until nothing is due.

Figures: the achieved request rate of each function over its documented limit (admitted requests - 1 over the
time from its first to its last, from the simulator's counters), 429s over requests, rows stored against the
simulator's truth, the runs it took, and the wall time in Graph minutes (wall time x SCALE).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

from shared.instants import yesterday

from .common import RAW, BenchStack, log

DOCUMENTED_PER_MINUTE = {"function": 50, "app": 200, "tenant": 1000}


def measure(stack: BenchStack, days: int, pages_per_day: int, scale: float, feeds: list[str],
            rows_per_page: int = 2, tick: str = "* * * * * *", subwindows: int = 16) -> dict:
    from devstack.localhost import TimerScheduler
    from shared.collect.run import scheduled_work
    from shared.config.settings import load_settings, specs
    from shared.stores.schema import ensure_stores
    from shared.stores import open_stores
    from shared.stores.clients import cosmos_client

    last = yesterday("UTC")
    first = last - dt.timedelta(days=days - 1)
    rows = pages_per_day * rows_per_page
    knobs = {"rows_per_day": {f: (rows if f in feeds else 0) for f in ("pstn", "directRouting")},
             "page_size": rows_per_page, "latency": 0, "faults": [], "late_rows": [], "rate_limit": None,
             "limits": "documented", "time_scale": scale}
    stack._post("/_sim/reset", {})
    stack._post("/_sim/config", knobs)
    env = stack.env(FEEDS=",".join(feeds), COVERAGE_START=first.isoformat(), RESCAN_DAYS="0",
                    GRAPH_FUNCTION_REQUESTS_PER_MINUTE=str(47 * scale),
                    GRAPH_APP_REQUESTS_PER_MINUTE=str(190 * scale),
                    GRAPH_TENANT_REQUESTS_PER_MINUTE=str(950 * scale),
                    TIME_BUDGET_SECONDS=f"{max(1.0, 1500 / scale):g}", COLLECT_TIMER_SCHEDULE=tick,
                    SUBWINDOWS=str(subwindows), LEASE_SECONDS="60")
    settings = load_settings(env)
    ensure_stores(settings)
    for name, value in env.items():
        os.environ[name] = value
    for spec in specs():  # nothing of the caller's environment may change what the app reads
        if spec.name not in env:
            os.environ.pop(spec.name, None)
    from function_app import app

    ledger = open_stores(settings).ledger
    started = time.monotonic()
    timer = TimerScheduler(app).start()
    try:
        while scheduled_work(settings, ledger):
            time.sleep(1.0)
            if time.monotonic() - started > 3600:
                raise RuntimeError("the backfill did not drain within an hour")
    finally:
        timer.stop()
    wall = time.monotonic() - started
    stats = stack.sim_stats()
    database = cosmos_client(settings).get_database_client(settings.cosmos_database)
    result = {"days": days, "pages_per_day": pages_per_day, "scale": scale, "wall_seconds": round(wall, 1),
              "graph_minutes": round(wall * scale / 60, 1), "ticks": timer.invocations.get("collect"),
              "feeds": {}}
    runs = set()
    for feed in feeds:
        function = {"pstn": "getPstnCalls", "directRouting": "getDirectRoutingCalls"}[feed]
        container = database.get_container_client(settings.container(feed))
        stored = next(iter(container.query_items("SELECT VALUE COUNT(1) FROM c", enable_cross_partition_query=True)))
        runs |= {r["run_id"] for r in ledger.runs(feed) if r.get("outcome") == "succeeded"}
        per_function = _function_stats(stats, function)
        span = per_function["last"] - per_function["first"]
        achieved = (per_function["admitted"] - 1) / span * 60 / scale if span > 0 else 0.0
        result["feeds"][feed] = {"stored": stored, "expected": days * rows, "requests": per_function["admitted"],
                                 "achieved_per_graph_minute": round(achieved, 2),
                                 "over_limit": round(achieved / DOCUMENTED_PER_MINUTE["function"], 3)}
    refused, admitted = _refused(stats)
    result.update({"runs": len(runs), "requests": admitted, "throttled": refused,
                   "throttled_share": round(refused / max(1, admitted + refused), 4)})
    return result


def _function_stats(stats: dict, function: str) -> dict:
    functions = stats["limits"]["functions"]
    entry = next(v for k, v in functions.items() if k.lower() == function.lower())
    return {"admitted": entry["admitted"], "first": entry["first_admitted"], "last": entry["last_admitted"]}


def _refused(stats: dict) -> tuple[int, int]:
    scopes = stats["limits"]["scopes"]
    refused = sum(s.get("refused", 0) for s in scopes.values())
    admitted = stats.get("requests", max((s.get("admitted", 0) for s in scopes.values()), default=0))
    return refused, admitted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.f_backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--pages", type=int, default=100, help="Graph pages per day per feed")
    parser.add_argument("--scale", type=float, default=100, help="simulated minutes per real minute")
    parser.add_argument("--feeds", default="pstn", help="comma separated: pstn,directRouting")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    with BenchStack(RAW) as stack:
        result = measure(stack, args.days, args.pages, args.scale, args.feeds.split(","))
    print(json.dumps(result, indent=1))
    log(f"(f) {args.days} days x {args.pages} pages: {result['runs']} runs, {result['requests']} requests, "
        f"{result['throttled']} answered 429; " + "; ".join(
            f"{feed}: {f['over_limit']} of the per-function limit, {f['stored']}/{f['expected']} rows"
            for feed, f in result["feeds"].items()))
    ok = all(f["over_limit"] >= 0.9 and f["stored"] == f["expected"] for f in result["feeds"].values()) \
        and result["throttled_share"] <= 0.01
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
