"""A collection run: the work list (missing days, the re-scan, backfill requests), oldest day first, within
the time budget; each day is a `DayCollection`. One failed day does not stop the others, but a store that does
not answer at all stops the run (every later day would fail the same way) and leaves the rest for the next.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..config.credentials import graph_credential
from ..config.feeds import Feed, enabled_feeds
from ..config.settings import Settings
from ..derive.summaries import refresh_summaries
from ..graph import GraphClient
from ..instants import days_between, now_iso, yesterday
from ..stores import Stores, open_stores
from ..stores.ledger import DayOutcome, new_run_id
from .day import STORE_UNREACHABLE, DayCollection, DayContext
from .heap import pin_mmap_threshold
from .replay import ReplayReport, replay_day
from .worklist import due_days

log = logging.getLogger("collector")

Progress = Callable[[DayOutcome], None]

# Days of one feed collected at once. A day's last pages come from its last windows alone, fewer requests in
# flight than the rate allows; a second day beside it keeps the function's limit busy (a backfill reaches 0.9 of
# Graph's limit instead of about 0.83, BENCHMARKS.md (f)). Both share the feed's Graph limits.
DAYS_IN_FLIGHT = 2


@dataclass
class RunReport:
    run_id: str
    started: str
    ended: str = ""
    outcomes: list[DayOutcome] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (feed, day) left for the next run

    @property
    def failed(self) -> list[DayOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]

    def totals(self) -> dict:
        done = [o for o in self.outcomes if o.outcome != "skipped"]
        return {"days": len(done), "failed": len(self.failed), "rows": sum(o.rows for o in done),
                "pages": sum(o.pages for o in done), "new": sum(o.new for o in done),
                "changed": sum(o.changed for o in done), "unchanged": sum(o.unchanged for o in done),
                "deferred": len(self.deferred)}

    def summary(self) -> str:
        """The run in a few lines for a person: totals, then each failed or skipped day."""
        t = self.totals()
        lines = [f"run {self.run_id}: {t['days']} day(s), {t['rows']} rows in {t['pages']} pages "
                 f"({t['new']} new, {t['changed']} changed, {t['unchanged']} unchanged), {t['failed']} failed"]
        for o in self.outcomes:
            if o.outcome == "failed":
                lines.append(f"  FAILED {o.feed} {o.day}: {o.error}")
            elif o.outcome == "skipped":
                lines.append(f"  skipped {o.feed} {o.day}: {o.error}")
        if self.deferred:
            lines.append(f"  {len(self.deferred)} day(s) left for the next run (time budget)")
        return "\n".join(lines)


class Collector:
    """Everything a run needs, wired once: build it with `build_collector(settings)`, close it after."""

    def __init__(self, settings: Settings, graph, stores: Stores):
        self.settings = settings
        self.graph = graph
        self.stores = stores
        self.ledger = stores.ledger
        # Feeds whose sub-windows returned rows outside themselves: Graph ignored the time part, so only
        # whole-day windows are safe for them from now on.
        self.whole_day_only: set[str] = set()
        self.pool = ThreadPoolExecutor(settings.upsert_concurrency, thread_name_prefix="upsert")
        self._context = DayContext(settings, graph, stores, self.pool)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        close = getattr(self.graph, "close", None)
        if close:
            close()

    def collect_day(self, feed: Feed, day: dt.date, run_id: str, done_since: str | None = None) -> DayOutcome:
        collection = DayCollection(self._context, feed, day, run_id, feed.name in self.whole_day_only, done_since)
        outcome = collection.run()
        if collection.fell_back_to_whole_days:
            self.whole_day_only.add(feed.name)
        return outcome

    def replay(self, feed: Feed, day: dt.date) -> ReplayReport:
        """Rebuild the day's documents (and summaries) from the archive, without calling Graph."""
        report = replay_day(feed, day, self.settings.graph_api_version, self.stores, self.pool,
                            self.settings.upsert_concurrency)
        refresh_summaries(self.stores, feed, report.days_written)
        return report

    def run(self, work: list[tuple[Feed, dt.date]], budget_seconds: float, run_id: str | None = None,
            progress: Progress | None = None) -> RunReport:
        """Collect the work list within the time budget: each feed's days oldest first, DAYS_IN_FLIGHT at a
        time, the feeds side by side (each has a Graph limit of its own, and together they share the app's);
        the rest is left for the next run."""
        run_id = run_id or new_run_id()
        report = RunReport(run_id, now_iso())
        by_feed: dict[str, list[tuple[Feed, dt.date]]] = {}
        for feed, day in sorted(work, key=lambda item: (item[1], item[0].name)):
            by_feed.setdefault(feed.name, []).append((feed, day))
        t0 = time.monotonic()
        lock = threading.Lock()
        unreachable = threading.Event()  # a store that does not answer stops every feed, not only its own

        def collect_feed(queue: deque, longest: list[float]) -> None:
            """One of a feed's DAYS_IN_FLIGHT workers: take its next day, oldest first, until none is left or
            the budget would not hold another."""
            while True:
                with lock:
                    if not queue:
                        return
                    elapsed = time.monotonic() - t0
                    # Start a day only if the longest day so far would still fit: a day cut off by the host's
                    # timeout would be recorded as neither success nor failure.
                    if unreachable.is_set() or elapsed + longest[0] * 1.2 > budget_seconds:
                        report.deferred += [(f.name, d.isoformat()) for f, d in queue]
                        queue.clear()
                        return
                    feed, day = queue.popleft()
                outcome = self.collect_day(feed, day, run_id, done_since=report.started)
                with lock:
                    longest[0] = max(longest[0], outcome.duration_seconds)
                    report.outcomes.append(outcome)
                    if progress:
                        progress(outcome)
                if outcome.outcome == "failed" and (outcome.error or "").startswith(STORE_UNREACHABLE):
                    # Every later day would fail the same way, each after the SDKs' retries: stop, and leave them
                    # to the next run rather than spend the budget knocking on a closed door.
                    log.error("run %s: %s; stopping", run_id, outcome.error)
                    unreachable.set()

        # Build the lazily opened stores before the threads race to.
        self.stores.ledger, self.stores.calls, self.stores.archive
        workers = [(deque(items), [0.0]) for items in by_feed.values()]
        with ThreadPoolExecutor(max(1, len(workers) * DAYS_IN_FLIGHT), thread_name_prefix="day") as days:
            for done in [days.submit(collect_feed, queue, longest) for queue, longest in workers
                         for _ in range(DAYS_IN_FLIGHT)]:
                done.result()
        report.outcomes.sort(key=lambda o: (o.day, o.feed))
        report.deferred.sort(key=lambda item: (item[1], item[0]))
        if report.deferred:
            log.warning("run %s: %d day(s) left for the next run (time budget of %ss, or a store not answering)",
                        run_id, len(report.deferred), budget_seconds)
        report.ended = now_iso()
        log.info("run %s finished: %s", run_id, report.totals(),
                 extra={"event": "collect.run", "runId": run_id, **report.totals()})
        return report


def build_collector(settings: Settings, graph=None, stores: Stores | None = None) -> Collector:
    """A collector on the stores of these settings (or those given); `graph` replaces the Graph client (tests
    inject one with their own sleep or credential)."""
    pin_mmap_threshold()  # page bodies go back to the system when freed (see collect/heap.py)
    graph = graph or GraphClient(settings, graph_credential(settings))
    return Collector(settings, graph, stores or open_stores(settings))


def scheduled_work(settings: Settings, ledger, now: dt.datetime | None = None) -> list[tuple[Feed, dt.date]]:
    """The work list of a tick of the timer, every enabled feed's due days (collect/worklist.py says which)."""
    return [item for items in due_work(settings, ledger, now).values() for item in items]


def due_work(settings: Settings, ledger, now: dt.datetime | None = None) -> dict[str, list[tuple[Feed, dt.date]]]:
    """Each enabled feed's due days at `now`: new days since the coverage start and the re-scan, as of the last
    occurrence of COLLECT_SCHEDULE, failed days due for a retry, and the days of pending backfill requests
    (which may lie before the coverage start)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    today = yesterday(settings.time_zone, now) + dt.timedelta(days=1)
    work = {}
    for feed in enabled_feeds(settings):
        first = ledger.coverage_start(feed.name, settings.coverage_start, today)
        days = due_days(ledger.day_states(feed.name), ledger.backfills(feed.name, pending_only=True), first,
                        settings.time_zone, settings.rescan_days, settings.collect_schedule,
                        dt.timedelta(minutes=settings.failed_retry_minutes), now)
        work[feed.name] = [(feed, day) for day in days]
    return work


def run_scheduled(settings: Settings, now: dt.datetime | None = None, collector: Collector | None = None,
                  progress: Progress | None = None) -> RunReport:
    """What a tick of the timer does: the due days within TIME_BUDGET_SECONDS, then settle the backfill requests.
    A tick with nothing due returns at once, without asking Graph for a token."""
    stores = collector.stores if collector is not None else open_stores(settings)
    work = scheduled_work(settings, stores.ledger, now)
    if not work:
        # Days a hand-run collection did (the command line settles nothing) may still close a request.
        for feed in enabled_feeds(settings):
            if stores.ledger.backfills(feed.name, pending_only=True):
                stores.ledger.settle_backfills(feed.name)
        return RunReport(new_run_id(), now_iso(), ended=now_iso())
    owned = collector is None
    collector = collector or build_collector(settings, stores=stores)
    try:
        report = collector.run(work, settings.time_budget_seconds, progress=progress)
        for feed in enabled_feeds(settings):
            for request in collector.ledger.settle_backfills(feed.name):
                log.info("backfill %s of %s %s..%s is done", request["id"], feed.name, request["from"], request["to"])
        return report
    finally:
        if owned:
            collector.close()


def run_days(settings: Settings, feeds: list[Feed], first: dt.date, last: dt.date,
             collector: Collector | None = None, progress: Progress | None = None,
             budget_seconds: float = float("inf")) -> RunReport:
    """Collect a date range by hand (the command line), through the same code path as the timer."""
    owned = collector is None
    collector = collector or build_collector(settings)
    try:
        work = [(feed, day) for feed in feeds for day in days_between(first, last)]
        return collector.run(work, budget_seconds, progress=progress)
    finally:
        if owned:
            collector.close()
