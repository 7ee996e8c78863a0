"""(a) Ingesting one day: the project's collector against what existing tools do, side by side.

The collector is `shared.collect.run.run_days` with the bench's settings (sub-windows fetched concurrently,
pages archived, rows hashed and written in transactional batches of up to 100 per day partition, several
batches at once). The baseline follows the day's nextLinks one after the other with `requests` and upserts
every row on its own with azure-cosmos, the way the existing exporters do; it writes the same documents
(`shared.stores.rows.to_document`) but does not archive pages, so it does less work than the collector.

Both run in the same mode, one right after the other, each into a database of its own; the figure is the
ratio of the two times per run.
"""
from __future__ import annotations

import datetime as dt
import resource
from dataclasses import dataclass

import requests

from shared.collect.run import run_days
from shared.collect.windows import day_window
from shared.config.feeds import FEEDS
from shared.config.settings import Settings
from shared.graph.client import build_function_url
from shared.stores.clients import cosmos_client
from shared.stores.rows import to_document

from .common import DAY, BenchStack, timed

# The collector's settings in (a) and (b): concurrent sub-windows, a client-side rate limit high enough not
# to bind (benchmark (e) measures the limiter), and concurrent batch writes.
COLLECTOR_SETTINGS = {"SUBWINDOWS": "8", "GRAPH_FUNCTION_REQUESTS_PER_MINUTE": "6000",
                      "GRAPH_APP_REQUESTS_PER_MINUTE": "6000", "GRAPH_TENANT_REQUESTS_PER_MINUTE": "6000",
                      "UPSERT_CONCURRENCY": "8"}


@dataclass
class Collection:
    seconds: float
    cpu_seconds: float
    rows: int
    pages: int
    requests: int
    new: int
    changed: int
    unchanged: int
    outcome: str


def collect(settings: Settings, day: dt.date = DAY) -> Collection:
    """One day through the collector, as the timer and the command line run it (in this process, which
    does nothing else meanwhile, so its CPU time is the collector's)."""
    cpu_before = _cpu()
    seconds, report = timed(lambda: run_days(settings, [FEEDS["pstn"]], day, day))
    cpu = _cpu() - cpu_before
    outcome = report.outcomes[0]
    if outcome.outcome != "succeeded":
        raise RuntimeError(f"collecting {day} failed: {outcome.error}")
    return Collection(seconds, cpu, outcome.rows, outcome.pages, 0, outcome.new, outcome.changed,
                      outcome.unchanged, outcome.outcome)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Baseline:
    seconds: float
    rows: int
    pages: int


def sequential_baseline(settings: Settings, day: dt.date = DAY) -> Baseline:
    """Follow nextLinks one by one; upsert each row with its own request."""
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container("pstn"))
    window = day_window(day, settings.time_zone)
    url = build_function_url(settings.graph_endpoint, settings.graph_api_version, "getPstnCalls",
                             window.start, window.end)
    headers = {"Authorization": f"Bearer {settings.graph_static_token}", "Accept": "application/json"}

    def run() -> tuple[int, int]:
        rows = pages = 0
        with requests.Session() as session:
            next_url = url
            while next_url:
                response = session.get(next_url, headers=headers, timeout=settings.graph_timeout_seconds)
                response.raise_for_status()
                page = response.json()
                pages += 1
                for row in page["value"]:
                    container.upsert_item(to_document(row, "startDateTime"))
                    rows += 1
                next_url = page.get("@odata.nextLink")
        return rows, pages

    seconds, (rows, pages) = timed(run)
    return Baseline(seconds, rows, pages)


def measure(stack: BenchStack, rows: int, figures, baseline: bool = True, after_collect=None) -> Collection:
    """One run of (a) in the stack's mode: the collector, then the baseline. `after_collect(settings, first)`
    runs on the collector's database before it is dropped (benchmark (b) re-scans it there)."""
    mode = stack.mode.name
    stack.simulate(rows_per_day=rows)
    stack.warm(DAY, DAY)
    settings = stack.settings(**COLLECTOR_SETTINGS)
    try:
        requests_before = stack.sim_stats().get("requests", 0)
        first = collect(settings)
        first.requests = stack.sim_stats().get("requests", 0) - requests_before
        if first.rows != rows:
            raise RuntimeError(f"the collector stored {first.rows} rows of a {rows}-row day")
        figures.get("a.collector", f"(a) collector: {rows:,}-row day", "s").add(mode, first.seconds)
        figures.get("a.collector_rows_s", "(a) collector throughput", "rows/s").add(mode, first.rows / first.seconds)
        figures.get("a.pages", "(a) collector: Graph pages (requests)", "pages").add(mode, first.pages)
        figures.get("a.requests", "(a) collector: Graph requests", "requests").add(mode, first.requests)
        figures.get("a.cpu", "(a) collector: CPU per 1,000 rows (its process)", "s").add(
            mode, first.cpu_seconds / first.rows * 1000)
        if after_collect is not None:
            after_collect(settings, first)
    finally:
        stack.drop(settings)
    if not baseline:
        return first
    settings = stack.settings()
    try:
        base = sequential_baseline(settings)
        if base.rows != rows:
            raise RuntimeError(f"the baseline stored {base.rows} rows of a {rows}-row day")
    finally:
        stack.drop(settings)
    figures.get("a.baseline", f"(a) sequential baseline: {rows:,}-row day", "s").add(mode, base.seconds)
    figures.get("a.ratio", "(a) collector speed-up over the baseline", "x", target=">= 5").add(
        mode, base.seconds / first.seconds)
    return first
