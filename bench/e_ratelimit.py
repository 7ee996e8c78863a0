"""(e) Graph requests per second achieved against the configured client-side limit, and 429s.

A day is collected with GRAPH_FUNCTION_REQUESTS_PER_MINUTE = 60 R (the app and tenant limits set to the same, so
the one function's limit is the one measured), with enough concurrent sub-windows and small
enough pages that the limit, not the latency, holds the collector back. The Graph simulator enforces its own
sliding-window limit just above R (R x window + the 1 more its schedule allows + 1 requests per window), so every
429 it answers means the client sent faster than it is configured to.

The achieved rate is read from the simulator's request log (arrival times): requests - 1 over the time from
the first request to the last.
"""
from __future__ import annotations

import datetime as dt
import math

from shared.collect.run import run_days
from shared.config.feeds import FEEDS
from shared.graph.ratelimit import reset_registry

from .common import DAY, BenchStack

RATE_DAY = DAY + dt.timedelta(days=3)
CLIENT_EXCESS = 1  # a scope of the client starts at most R x window + 1 requests in any window (one per cell)
WINDOW_SECONDS = 10


def simulator_limit(rate: float, window: float = WINDOW_SECONDS) -> dict:
    return {"requests": math.ceil(rate * window) + CLIENT_EXCESS + 1, "per_seconds": window}


def measure(stack: BenchStack, rate: float, rows: int, page_size: int, figures, subwindows: int = 24) -> dict:
    """One run of (e) in the stack's mode; returns the numbers it recorded."""
    mode = stack.mode.name
    limit = simulator_limit(rate)
    stack.simulate(rows_per_day=rows, page_size=page_size, rate_limit=limit)
    stack.warm(RATE_DAY, RATE_DAY)
    stack.simulate(rows_per_day=rows, page_size=page_size, rate_limit=limit)  # a fresh rate window and log
    per_minute = f"{rate * 60:g}"
    settings = stack.settings(SUBWINDOWS=str(subwindows), GRAPH_FUNCTION_REQUESTS_PER_MINUTE=per_minute,
                              GRAPH_APP_REQUESTS_PER_MINUTE=per_minute, GRAPH_TENANT_REQUESTS_PER_MINUTE=per_minute,
                              UPSERT_CONCURRENCY="8")
    # The process's limits remember earlier runs (a schedule running ahead, a scope slowed by a 429): each
    # measurement starts from the configured rate.
    reset_registry()
    try:
        report = run_days(settings, [FEEDS["pstn"]], RATE_DAY, RATE_DAY)
    finally:
        stack.drop(settings)
    outcome = report.outcomes[0]
    if outcome.outcome != "succeeded" or outcome.rows != rows:
        raise RuntimeError(f"collecting the rate day failed: {outcome.error} ({outcome.rows} rows)")
    entries = [e for e in stack.sim_log() if "/communications/callRecords/" in e["path"]]
    times = sorted(e["time"] for e in entries)
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    throttled = sum(1 for e in entries if e["status"] == 429)
    figures.get("e.configured", "(e) configured client-side limit", "req/s").add(mode, rate)
    figures.get("e.achieved", "(e) Graph request rate achieved", "req/s").add(mode, achieved)
    figures.get("e.ratio", "(e) achieved / configured rate", "ratio", target=">= 0.8").add(mode, achieved / rate)
    figures.get("e.requests", "(e) Graph requests in the run", "requests").add(mode, len(entries))
    figures.get("e.429", f"(e) 429s from the simulator's limit ({limit['requests']}/{limit['per_seconds']} s)",
                "responses", target="== 0", target_mode="all").add(mode, throttled)
    return {"achieved": achieved, "requests": len(entries), "throttled": throttled, "retries": outcome.retries}
